"""The known errors' knowledge base over HTTP: search the articles, read one."""

from typing import Annotated

from fastapi import APIRouter, HTTPException, Query, status
from sqlmodel import Session

from itilflow.gateway.deps import GatewayDep, Reporter
from itilflow.gateway.problems import ArticleOut, article_out
from itilflow.models import KnowledgeArticle, parse_article_ref
from itilflow.services import problems

# Tagged "problems" too, as when the knowledge routes were part of the problems API.
router = APIRouter(prefix="/api/knowledge", tags=["problems", "knowledge"])


@router.get("", response_model=list[ArticleOut])
def search_knowledge(
    _: Reporter,
    gateway: GatewayDep,
    q: Annotated[str, Query(max_length=200)] = "",
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
) -> list[ArticleOut]:
    """Known errors' articles with any of the words in `q` (case-insensitive), best first."""
    with Session(gateway.engine) as session:
        return [
            article_out(article, score)
            for article, score in problems.search_articles(session, q, limit=limit)
        ]


@router.get("/{ref}", response_model=ArticleOut)
def get_article(ref: str, _: Reporter, gateway: GatewayDep) -> ArticleOut:
    with Session(gateway.engine) as session:
        try:
            article = session.get(KnowledgeArticle, parse_article_ref(ref))
        except ValueError as exc:
            raise HTTPException(status.HTTP_404_NOT_FOUND, f"{ref} not found") from exc
        if article is None:
            raise HTTPException(status.HTTP_404_NOT_FOUND, f"{ref} not found")
        return article_out(article)
