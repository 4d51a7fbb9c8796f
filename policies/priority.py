"""Priority from impact and urgency: the matrix in priority.yaml."""

from __future__ import annotations

from pydantic import model_validator

from itilflow.policies._base import Name, PolicyModel, Priority, plain_list, raise_if


class PriorityPolicy(PolicyModel):
    impacts: list[Name]
    urgencies: list[Name]
    # matrix[impact][urgency] -> P1..P4
    matrix: dict[Name, dict[Name, Priority]]
    default_impact: Name | None = None
    default_urgency: Name | None = None
    # How each priority is called in messages (the service plans say urgent/high/normal/low).
    labels: dict[Priority, str] = {"P1": "urgent", "P2": "high", "P3": "normal", "P4": "low"}

    @model_validator(mode="after")
    def _check(self) -> PriorityPolicy:
        problems: list[tuple[tuple[str | int, ...], str]] = []
        for key, levels in (("impacts", self.impacts), ("urgencies", self.urgencies)):
            if not levels:
                problems.append(((key,), "expected at least one level"))
            duplicates = sorted({level for level in levels if levels.count(level) > 1})
            if duplicates:
                problems.append(((key,), f"listed twice: {plain_list(duplicates)}"))
        for impact, row in self.matrix.items():
            if impact not in self.impacts:
                problems.append(
                    (
                        ("matrix", impact),
                        f"'{impact}' is not an impact level; expected one of "
                        f"{plain_list(self.impacts)}",
                    )
                )
                continue
            for urgency in row:
                if urgency not in self.urgencies:
                    problems.append(
                        (
                            ("matrix", impact, urgency),
                            f"'{urgency}' is not an urgency level; expected one of "
                            f"{plain_list(self.urgencies)}",
                        )
                    )
        for impact in self.impacts:
            for urgency in self.urgencies:
                if urgency not in self.matrix.get(impact, {}):
                    problems.append(
                        (
                            ("matrix", impact, urgency),
                            "missing; every impact x urgency pair needs a priority (P1..P4)",
                        )
                    )
        for key, value, levels in (
            ("default_impact", self.default_impact, self.impacts),
            ("default_urgency", self.default_urgency, self.urgencies),
        ):
            if value is not None and value not in levels:
                problems.append(((key,), f"expected one of {plain_list(levels)}, got {value!r}"))
        raise_if(problems)
        return self


def decide_priority(policy: PriorityPolicy, impact: str | None, urgency: str | None) -> str:
    """Look up P1..P4 for an impact and urgency; None falls back to the policy's default."""
    impact = _level(impact, policy.default_impact, policy.impacts, "impact")
    urgency = _level(urgency, policy.default_urgency, policy.urgencies, "urgency")
    return policy.matrix[impact][urgency]


def _level(value: str | None, default: str | None, allowed: list[str], what: str) -> str:
    if value is None or value == "":
        if default is None:
            raise ValueError(f"no {what} given and priority.yaml sets no default_{what}")
        return default
    normalised = value.strip().lower()
    for level in allowed:
        if level.lower() == normalised:
            return level
    raise ValueError(f"unknown {what} {value!r}; expected one of {plain_list(allowed)}")
