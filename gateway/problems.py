"""Problems and the knowledge base over HTTP: list and read problems with their incidents and
timeline, work them through their lifecycle, and search the known errors' articles.

The knowledge base's search is gateway/knowledge.py.
"""

from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, HTTPException, Query, status
from pydantic import BaseModel, ConfigDict, Field, model_validator
from sqlalchemy import func
from sqlmodel import Session, col, select

from itilflow.gateway.deps import Agent, GatewayDep, Reporter
from itilflow.gateway.schemas import MAX_OFFSET, refuse_identity_claims
from itilflow.models import (
    Incident,
    KnowledgeArticle,
    Problem,
    ProblemIncident,
    change_number,
    get_article_of,
    get_problem_timeline,
    list_problems,
    parse_problem_ref,
    problem_number,
)
from itilflow.notifications.problem_context import problem_url
from itilflow.services import problems

ProblemAction = Literal[
    "investigate",
    "analyse",
    "workaround",
    "known_error",
    "link_fix",
    "resolve",
    "close",
    "reopen",
    "assign",
    "comment",
]


class Why(BaseModel):
    model_config = ConfigDict(extra="forbid")
    why: str = Field(min_length=1, max_length=2000)
    answer: str = Field(min_length=1, max_length=2000)


class ProblemActionIn(BaseModel):
    """What the actions read: analyse (whys, root_cause, root_cause_category), workaround and
    known_error (workaround, symptoms, keywords), link_fix (change), assign (engineer or group);
    every action takes a note."""

    model_config = ConfigDict(extra="forbid")

    note: str = Field(default="", max_length=10_000)
    whys: list[Why] = Field(default_factory=list, max_length=10)
    root_cause: str = Field(default="", max_length=10_000)
    root_cause_category: str | None = Field(default=None, max_length=32)
    workaround: str = Field(default="", max_length=10_000)
    symptoms: str = Field(default="", max_length=10_000)
    keywords: list[str] = Field(default_factory=list, max_length=30)
    change: str | None = Field(default=None, max_length=40)
    engineer: str | None = Field(default=None, max_length=64)
    group: str | None = Field(default=None, max_length=64)

    @model_validator(mode="before")
    @classmethod
    def _actor_is_the_principal(cls, data: Any) -> Any:
        return refuse_identity_claims(data, "actor")


class ProblemOut(BaseModel):
    id: int
    number: str
    url: str
    title: str
    description: str
    status: str
    match_kind: str
    match_value: str
    category: str | None
    owner: str | None
    owner_group: str | None
    whys: list[dict[str, str]]
    root_cause: str
    root_cause_category: str | None
    workaround: str
    known_error: bool
    fix_change: str | None
    incident_count: int
    last_incident_at: datetime | None
    created_at: datetime
    updated_at: datetime
    resolved_at: datetime | None
    closed_at: datetime | None


class LinkedIncidentOut(BaseModel):
    id: int
    number: str
    title: str
    status: str
    priority: str | None
    category: str | None
    ci: str | None
    opened_at: datetime


class EntryOut(BaseModel):
    at: datetime
    actor: str
    kind: str
    message: str
    data: dict[str, Any]


class ArticleOut(BaseModel):
    id: int
    number: str
    problem: str
    title: str
    symptoms: str
    workaround: str
    root_cause: str
    keywords: list[str]
    ci: str | None
    category: str | None
    fingerprint: str | None
    updated_at: datetime
    score: int | None = None


class ProblemDetailOut(ProblemOut):
    incidents: list[LinkedIncidentOut]
    timeline: list[EntryOut]
    article: ArticleOut | None


router = APIRouter(prefix="/api/problems", tags=["problems"])


def counts(session: Session, ids: list[int]) -> dict[int, int]:
    rows = session.exec(
        select(ProblemIncident.problem_id, func.count())
        .where(col(ProblemIncident.problem_id).in_(ids))
        .group_by(ProblemIncident.problem_id)
    )
    return dict(rows.all())


def out(problem: Problem, incident_count: int, public_url: str) -> dict[str, Any]:
    assert problem.id is not None
    return {
        "id": problem.id,
        "number": problem.number,
        "url": problem_url(public_url, problem.id),
        "title": problem.title,
        "description": problem.description,
        "status": problem.status.value,
        "match_kind": problem.match_kind,
        "match_value": problem.match_value,
        "category": problem.category,
        "owner": problem.owner,
        "owner_group": problem.owner_group,
        "whys": problem.whys,
        "root_cause": problem.root_cause,
        "root_cause_category": problem.root_cause_category,
        "workaround": problem.workaround,
        "known_error": problem.known_error,
        "fix_change": change_number(problem.fix_change_id) if problem.fix_change_id else None,
        "incident_count": incident_count,
        "last_incident_at": problem.last_incident_at,
        "created_at": problem.created_at,
        "updated_at": problem.updated_at,
        "resolved_at": problem.resolved_at,
        "closed_at": problem.closed_at,
    }


def article_out(article: KnowledgeArticle, score: int | None = None) -> ArticleOut:
    assert article.id is not None
    return ArticleOut(
        id=article.id,
        number=article.number,
        problem=problem_number(article.problem_id),
        title=article.title,
        symptoms=article.symptoms,
        workaround=article.workaround,
        root_cause=article.root_cause,
        keywords=article.keyword_list,
        ci=article.ci_name,
        category=article.category,
        fingerprint=article.fingerprint,
        updated_at=article.updated_at,
        score=score,
    )


def load(session: Session, ref: str) -> Problem:
    try:
        return problems.load_problem(session, parse_problem_ref(ref))
    except (ValueError, problems.NotFound) as exc:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"{ref} not found") from exc


def detail(session: Session, problem: Problem, public_url: str) -> ProblemDetailOut:
    assert problem.id is not None
    linked = session.exec(
        select(Incident)
        .join(ProblemIncident, col(ProblemIncident.incident_id) == col(Incident.id))
        .where(ProblemIncident.problem_id == problem.id)
        .order_by(col(Incident.opened_at), col(Incident.id))
    ).all()
    article = get_article_of(session=session, problem_id=problem.id)
    return ProblemDetailOut(
        **out(problem, len(linked), public_url),
        incidents=[
            LinkedIncidentOut(
                id=i.id or 0,
                number=i.number,
                title=i.title,
                status=i.status.value,
                priority=i.priority,
                category=i.category,
                ci=i.ci_name,
                opened_at=i.opened_at,
            )
            for i in linked
        ],
        timeline=timeline(session, problem.id),
        article=article_out(article) if article else None,
    )


def timeline(session: Session, problem_id: int) -> list[EntryOut]:
    return [
        EntryOut(at=e.at, actor=e.actor, kind=e.kind, message=e.message, data=e.data)
        for e in get_problem_timeline(session=session, problem_id=problem_id)
    ]


@router.get("", response_model=list[ProblemOut])
def get_problems(
    _: Reporter,
    gateway: GatewayDep,
    status_filter: Annotated[str | None, Query(alias="status")] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
    offset: Annotated[int, Query(ge=0, le=MAX_OFFSET)] = 0,
) -> list[ProblemOut]:
    with Session(gateway.engine) as session:
        rows = list_problems(session=session, status=status_filter, limit=limit, offset=offset)
        linked = counts(session, [p.id for p in rows if p.id is not None])
        url = gateway.settings.public_url or ""
        return [ProblemOut(**out(p, linked.get(p.id or 0, 0), url)) for p in rows]


@router.get("/{ref}", response_model=ProblemDetailOut)
def get_problem(ref: str, _: Reporter, gateway: GatewayDep) -> ProblemDetailOut:
    """The problem with its linked incidents, timeline and knowledge article."""
    with Session(gateway.engine) as session:
        return detail(session, load(session, ref), gateway.settings.public_url or "")


@router.get("/{ref}/timeline", response_model=list[EntryOut])
def get_problem_entries(ref: str, _: Reporter, gateway: GatewayDep) -> list[EntryOut]:
    with Session(gateway.engine) as session:
        problem = load(session, ref)
        assert problem.id is not None
        return timeline(session, problem.id)


@router.post(
    "/{ref}/{action}",
    response_model=ProblemDetailOut,
    responses={409: {"description": "the problem's state or the input does not allow it"}},
)
def act_on_problem(
    ref: str, action: ProblemAction, body: ProblemActionIn, client: Agent, gateway: GatewayDep
) -> ProblemDetailOut:
    data = problems.ActionInput(
        note=body.note,
        whys=[why.model_dump() for why in body.whys],
        root_cause=body.root_cause,
        root_cause_category=body.root_cause_category,
        workaround=body.workaround,
        symptoms=body.symptoms,
        keywords=body.keywords,
        change=body.change,
        engineer=body.engineer,
        group=body.group,
    )
    with Session(gateway.engine, expire_on_commit=False) as session:
        problem = load(session, ref)
        assert problem.id is not None
        try:
            problems.apply_action(
                session,
                problem.id,
                action,
                actor=client.name,
                data=data,
                policies=gateway.policies,
            )
            session.commit()
        except problems.ProblemError as exc:
            session.rollback()
            raise HTTPException(status.HTTP_409_CONFLICT, str(exc)) from exc
        return detail(session, problem, gateway.settings.public_url or "")
