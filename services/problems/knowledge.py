"""Known errors: the knowledge article a known error writes, its search, and the matching of new
incidents against known errors.

Each function works in the caller's transaction: the caller commits or nothing happened.
"""

from __future__ import annotations

import operator
import re
from collections import Counter
from functools import reduce
from typing import Any

from sqlalchemy import case, func
from sqlalchemy.sql.elements import ColumnElement
from sqlmodel import Session, col, select

from itilflow import clock
from itilflow.models import (
    NOT_CLOSED,
    Incident,
    KnowledgeArticle,
    Problem,
    ProblemIncident,
    add_timeline,
    get_article_of,
    get_timeline,
)
from itilflow.policies import (
    ProblemPolicy,
)
from itilflow.services.problems.common import ActionInput
from itilflow.services.problems.detection import link_incidents

# --- knowledge -----------------------------------------------------------------------------------

_WORD = re.compile(r"[^\W_]+(?:[-.][^\W_]+)*", re.UNICODE)
_STOPWORDS = frozenset(
    "a an and are but for from has have into its not now of off on or our over the their them "
    "then there this that was were when with without repeated incidents incident alert".split()
)


def normalise_keywords(words: list[str]) -> str:
    """Lower-case words, each once, in the order given, separated by single spaces."""
    seen: dict[str, None] = {}
    for word in words:
        for token in _WORD.findall(word.lower()):
            seen.setdefault(token, None)
    return " ".join(seen)


def _derived_keywords(title: str, titles: list[str]) -> list[str]:
    counts: Counter[str] = Counter()
    for text in [title, *titles]:
        for token in set(_WORD.findall(text.lower())):
            if len(token) >= 4 and token not in _STOPWORDS and not token.isdigit():
                counts[token] += 1
    return [word for word, _ in sorted(counts.items(), key=lambda item: (-item[1], item[0]))][:8]


def _mode(session: Session, problem_id: int, column: Any) -> Any:
    row = session.exec(
        select(column, func.count())
        .join(ProblemIncident, col(ProblemIncident.incident_id) == col(Incident.id))
        .where(ProblemIncident.problem_id == problem_id, col(column).is_not(None), column != "")
        .group_by(column)
        .order_by(func.count().desc(), column)
        .limit(1)
    ).first()
    return row[0] if row else None


def write_article(session: Session, problem: Problem, data: ActionInput) -> KnowledgeArticle:
    """Create or bring up to date the knowledge article of a known error."""
    assert problem.id is not None
    article = get_article_of(session=session, problem_id=problem.id)
    if article is None:
        article = KnowledgeArticle(problem_id=problem.id, title=problem.title)
    titles = list(
        session.exec(
            select(Incident.title)
            .join(ProblemIncident, col(ProblemIncident.incident_id) == col(Incident.id))
            .where(ProblemIncident.problem_id == problem.id)
            .order_by(col(Incident.opened_at).desc())
            .limit(20)
        )
    )
    article.title = problem.title
    if data.symptoms.strip():
        article.symptoms = data.symptoms.strip()
    elif not article.symptoms:
        article.symptoms = "\n".join(dict.fromkeys(titles[:5]))
    article.workaround = problem.workaround
    article.root_cause = problem.root_cause
    if data.keywords:
        article.keywords = normalise_keywords(data.keywords)
    elif not article.keywords:
        article.keywords = normalise_keywords(_derived_keywords(problem.title, titles))
    article.category = problem.category
    article.ci_name = (
        problem.match_value
        if problem.match_kind == "ci"
        else _mode(session, problem.id, Incident.ci_name)
    )
    article.fingerprint = (
        problem.match_value
        if problem.match_kind == "fingerprint"
        else _mode(session, problem.id, Incident.fingerprint)
    )
    article.updated_at = clock.now()
    session.add(article)
    session.flush()
    return article


def _like(column: Any, term: str) -> ColumnElement[bool]:
    escaped = term.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return func.lower(func.coalesce(column, "")).like(f"%{escaped}%", escape="\\")


# Points per query word found in each field: the title and keywords weigh most.
_WEIGHTS = (
    (KnowledgeArticle.title, 3),
    (KnowledgeArticle.keywords, 3),
    (KnowledgeArticle.symptoms, 2),
    (KnowledgeArticle.workaround, 1),
    (KnowledgeArticle.root_cause, 1),
)


def search_articles(
    session: Session, query: str, *, limit: int = 20
) -> list[tuple[KnowledgeArticle, int]]:
    """Articles with any of the query's words (case-insensitive, anywhere in the title, symptoms,
    workaround, root cause or keywords), best first: points per word and field found, then the
    most recently updated. An empty query lists the latest articles."""
    terms = list(dict.fromkeys(word for word in query.lower().split() if word))[:8]
    if not terms:
        rows = session.exec(
            select(KnowledgeArticle)
            .order_by(col(KnowledgeArticle.updated_at).desc(), col(KnowledgeArticle.id).desc())
            .limit(limit)
        ).all()
        return [(article, 0) for article in rows]
    score = reduce(
        operator.add,
        (
            case((_like(column, term[:100]), weight), else_=0)
            for term in terms
            for column, weight in _WEIGHTS
        ),
    ).label("score")
    rows = session.exec(
        select(KnowledgeArticle, score)
        .where(score > 0)
        .order_by(score.desc(), col(KnowledgeArticle.updated_at).desc(), col(KnowledgeArticle.id))
        .limit(limit)
    ).all()
    return [(article, int(points)) for article, points in rows]


# --- known errors for new incidents --------------------------------------------------------------


def match_known_error(
    session: Session, incident: Incident, policy: ProblemPolicy
) -> tuple[KnowledgeArticle, Problem, str] | None:
    """The known error a new incident looks like, and why; None when none fits.

    Known errors of problems not closed count, strongest reason first: the same alert
    fingerprint; the same configuration item and category; then `known_error_match.keyword_hits`
    of the article's keywords (all of them if it has fewer) as words of the incident's title or
    description. Ties go to the most recently updated article.
    """
    live = (
        select(KnowledgeArticle, Problem)
        .join(Problem, col(Problem.id) == col(KnowledgeArticle.problem_id))
        .where(col(Problem.known_error).is_(True), col(Problem.status).in_(NOT_CLOSED))
    )
    newest = (col(KnowledgeArticle.updated_at).desc(), col(KnowledgeArticle.id).desc())
    if incident.fingerprint:
        row = session.exec(
            live.where(KnowledgeArticle.fingerprint == incident.fingerprint).order_by(*newest)
        ).first()
        if row:
            return row[0], row[1], "same alert fingerprint"
    if incident.ci_name and incident.category:
        row = session.exec(
            live.where(
                KnowledgeArticle.ci_name == incident.ci_name,
                KnowledgeArticle.category == incident.category,
            ).order_by(*newest)
        ).first()
        if row:
            return row[0], row[1], f"same configuration item ({incident.ci_name}) and category"
    words = set(_WORD.findall(f"{incident.title}\n{incident.description}".lower()))
    best: tuple[int, KnowledgeArticle, Problem, list[str]] | None = None
    for article, problem in session.exec(live.order_by(*newest)).all():
        keywords = article.keyword_list
        if not keywords:
            continue
        hits = [word for word in keywords if word in words]
        if len(hits) >= min(policy.known_error_match.keyword_hits, len(keywords)) and (
            best is None or len(hits) > best[0]
        ):
            best = (len(hits), article, problem, hits)
    if best is not None:
        return best[1], best[2], f"keywords {', '.join(best[3])}"
    return None


def record_known_error_match(
    session: Session, incident: Incident, policy: ProblemPolicy, *, actor: str
) -> dict[str, Any] | None:
    """Match a new incident to a known error: its workaround on the incident's timeline, the
    incident linked to the problem. Idempotent: a second call returns the first match."""
    assert incident.id is not None
    for entry in get_timeline(session=session, incident_id=incident.id):
        if entry.kind == "known_error_matched":
            return dict(entry.data.get("known_error") or {}) or None
    found = match_known_error(session, incident, policy)
    if found is None:
        return None
    article, problem, reason = found
    known_error = {
        "problem": problem.number,
        "article": article.number,
        "title": article.title,
        "workaround": article.workaround,
        "reason": reason,
    }
    add_timeline(
        session=session,
        incident_id=incident.id,
        kind="known_error_matched",
        actor=actor,
        message=(
            f"matches known error {problem.number} ({article.number}, {reason}); "
            f"workaround: {article.workaround}"
        ),
        data={"known_error": known_error},
    )
    link_incidents(session, problem, [incident.id], actor=actor)
    return known_error
