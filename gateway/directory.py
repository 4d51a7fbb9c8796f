"""The team's directory over HTTP: /api/groups, /api/people, /api/cis.

List (filters `group`, `active`, `q`), get, create (201), update (PATCH: only the fields sent),
deactivate and reactivate. There is no DELETE: incidents, changes and problems refer to these
records, so a record leaves the team by deactivation. The rules live in
`itilflow.services.directory`; these routes only translate them to HTTP.
"""

from collections.abc import Callable
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Query, status
from sqlmodel import Session, SQLModel, select

from itilflow.gateway.deps import Admin, Gateway, GatewayDep, Reporter
from itilflow.models.people import (
    ConfigurationItemCreate,
    ConfigurationItemPublic,
    ConfigurationItemUpdate,
    EngineerCreate,
    EngineerPublic,
    EngineerUpdate,
    GroupCreate,
    GroupPublic,
    GroupUpdate,
)
from itilflow.services import directory
from itilflow.services.directory import KEY_OF, SINGULAR, TABLE, Kind

PREFIX = "/api"


def _public(kind: Kind, row: Any) -> Any:
    if kind == "people":
        return EngineerPublic.model_validate(
            {**row.model_dump(), "groups": row.memberships(), "skills": row.skills or []}
        )
    schema = GroupPublic if kind == "groups" else ConfigurationItemPublic
    return schema.model_validate(row.model_dump())


def _matches(kind: Kind, row: Any, *, group: str | None, q: str | None) -> bool:
    if group is not None:
        if kind == "people" and group not in row.memberships():
            return False
        if kind == "cis" and row.owner_group != group:
            return False
        if kind == "groups" and row.name != group:
            return False
    if q:
        wanted = q.lower()
        texts = [getattr(row, KEY_OF[kind])]
        if kind == "people":
            texts += [row.name, row.email or ""]
        elif kind == "cis":
            texts += [row.kind, row.environment or ""]
        else:
            texts += [row.email or ""]
        return any(wanted in text.lower() for text in texts)
    return True


router = APIRouter(prefix=PREFIX)


def _write(gateway: Gateway, action: Callable[[Session], Any], kind: Kind) -> Any:
    """Run `action` in a transaction; the directory's refusals become 404, 409 and 422."""
    with Session(gateway.engine, expire_on_commit=False) as session:
        try:
            row = action(session)
            session.commit()
        except directory.NotFound as exc:
            raise HTTPException(status.HTTP_404_NOT_FOUND, str(exc)) from exc
        except directory.AlreadyExists as exc:
            raise HTTPException(status.HTTP_409_CONFLICT, str(exc)) from exc
        except directory.DirectoryError as exc:
            detail = [
                {"loc": ["body", p.column] if p.column else ["body"], "msg": p.message}
                for p in exc.problems
            ]
            raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, detail) from exc
        return _public(kind, row)


def _add_read_routes(kind: Kind, path: str, public: type[SQLModel]) -> None:
    tags: list[str | Any] = [path]
    key = KEY_OF[kind]
    what = SINGULAR[kind]

    @router.get(f"/{path}", response_model=list[public], tags=tags, name=f"list_{path}")
    def list_records(
        _: Reporter,
        gateway: GatewayDep,
        group: Annotated[str | None, Query(max_length=64)] = None,
        active: bool | None = None,
        q: Annotated[str | None, Query(max_length=200)] = None,
        limit: Annotated[int, Query(ge=1, le=5000)] = 500,
        offset: Annotated[int, Query(ge=0)] = 0,
    ) -> list[Any]:
        """`group`: its members (people), the CIs it owns (cis); `active`: only active or
        only deactivated records (default both); `q`: a piece of the name, email or kind."""
        table = TABLE[kind]
        statement = select(table).order_by(getattr(table, key))
        if active is not None:
            statement = statement.where(table.active == active)  # type: ignore[attr-defined]
        with Session(gateway.engine) as session:
            rows = [row for row in session.exec(statement) if _matches(kind, row, group=group, q=q)]
        return [_public(kind, row) for row in rows[offset : offset + limit]]

    @router.get(f"/{path}/{{key}}", response_model=public, tags=tags, name=f"get_{what}")
    def get_record(key: str, _: Reporter, gateway: GatewayDep) -> Any:
        with Session(gateway.engine) as session:
            row = session.get(table_of, key)
            if row is None:
                raise HTTPException(status.HTTP_404_NOT_FOUND, f"no {what} {key!r}")
            return _public(kind, row)

    table_of = TABLE[kind]


def _add_write_routes(
    kind: Kind,
    path: str,
    create_schema: type[SQLModel],
    update_schema: type[SQLModel],
    public: type[SQLModel],
) -> None:
    tags: list[str | Any] = [path]
    what = SINGULAR[kind]

    @router.post(
        f"/{path}",
        response_model=public,
        status_code=status.HTTP_201_CREATED,
        tags=tags,
        name=f"create_{what}",
        responses={409: {"description": f"the {what} exists already"}},
    )
    def create_record(body: create_schema, _: Admin, gateway: GatewayDep) -> Any:  # type: ignore[valid-type]
        values = body.model_dump()  # type: ignore[attr-defined]
        return _write(gateway, lambda s: directory.save_one(s, kind, values, create=True), kind)

    @router.patch(f"/{path}/{{key}}", response_model=public, tags=tags, name=f"update_{what}")
    def update_record(key: str, body: update_schema, _: Admin, gateway: GatewayDep) -> Any:  # type: ignore[valid-type]
        """Only the fields sent change."""
        values = {**body.model_dump(exclude_unset=True), KEY_OF[kind]: key}  # type: ignore[attr-defined]
        return _write(gateway, lambda s: directory.save_one(s, kind, values, create=False), kind)

    @router.post(
        f"/{path}/{{key}}/deactivate",
        response_model=public,
        tags=tags,
        name=f"deactivate_{what}",
    )
    def deactivate_record(key: str, _: Admin, gateway: GatewayDep) -> Any:
        """Nothing is deleted: the record stays for the incidents that name it."""
        return _write(gateway, lambda s: directory.set_active(s, kind, key, False), kind)

    @router.post(
        f"/{path}/{{key}}/reactivate",
        response_model=public,
        tags=tags,
        name=f"reactivate_{what}",
    )
    def reactivate_record(key: str, _: Admin, gateway: GatewayDep) -> Any:
        return _write(gateway, lambda s: directory.set_active(s, kind, key, True), kind)


def _add_routes() -> None:
    kinds: tuple[tuple[Kind, type[SQLModel], type[SQLModel], type[SQLModel]], ...] = (
        ("groups", GroupCreate, GroupUpdate, GroupPublic),
        ("people", EngineerCreate, EngineerUpdate, EngineerPublic),
        ("cis", ConfigurationItemCreate, ConfigurationItemUpdate, ConfigurationItemPublic),
    )
    for kind, create_schema, update_schema, public in kinds:
        # Reads first, then writes, per kind: the order of the routes and of the OpenAPI document.
        _add_read_routes(kind, kind, public)
        _add_write_routes(kind, kind, create_schema, update_schema, public)


_add_routes()
