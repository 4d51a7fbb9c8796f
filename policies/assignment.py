"""Dispatch (assignment.yaml): which group owns a category, and which engineer takes the ticket."""

from __future__ import annotations

from collections.abc import Sequence
from fractions import Fraction

from pydantic import BaseModel, ConfigDict, Field

from itilflow.policies._base import Name, PolicyModel


class CategoryRule(PolicyModel):
    group: Name
    # Engineers with these skills are preferred; nobody is refused for lacking them.
    skills: list[Name] = []


class AssignmentPolicy(PolicyModel):
    default_group: Name
    categories: dict[Name, CategoryRule] = {}

    def rule_for(self, category: str | None) -> tuple[str, list[str], str]:
        """(group, required skills, why) for a category; unknown or None -> default group."""
        if category:
            wanted = category.strip().lower()
            for name, rule in self.categories.items():
                if name.lower() == wanted:
                    why = f"category {name!r} goes to group {rule.group!r}"
                    return rule.group, rule.skills, why
            return (
                self.default_group,
                [],
                f"category {category!r} has no rule; default group {self.default_group!r}",
            )
        return self.default_group, [], f"no category; default group {self.default_group!r}"


class Candidate(BaseModel):
    """An engineer as dispatch sees them; built by the caller from the database."""

    model_config = ConfigDict(frozen=True)

    username: str
    group: str
    skills: frozenset[str] = frozenset()
    capacity: int = Field(ge=0)
    on_duty: bool = True
    open_load: int = Field(0, ge=0)


class Assignment(BaseModel):
    model_config = ConfigDict(frozen=True)

    group: str
    engineer: str | None
    reason: str


def choose_assignee(
    policy: AssignmentPolicy, category: str | None, candidates: Sequence[Candidate]
) -> Assignment:
    """Pick an engineer of the category's group.

    Only on-duty members below capacity are eligible. Among them: most required skills first, then
    the lowest load relative to capacity, then the fewest open tickets, then username (so the
    choice is reproducible). Nobody eligible -> the group alone, with the reason.
    """
    group, skills, why = policy.rule_for(category)
    wanted = {skill.lower() for skill in skills}
    members = [c for c in candidates if c.group == group]
    off_duty = [c for c in members if not c.on_duty]
    full = [c for c in members if c.on_duty and c.open_load >= c.capacity]
    eligible = [c for c in members if c.on_duty and c.open_load < c.capacity]
    if not eligible:
        detail = f"{len(members)} member(s)"
        if members:
            detail += f": {len(off_duty)} off duty, {len(full)} at capacity"
        return Assignment(
            group=group,
            engineer=None,
            reason=f"{why}; nobody available in the group ({detail}); assigned to the group",
        )

    def matched(candidate: Candidate) -> int:
        return len(wanted & {skill.lower() for skill in candidate.skills})

    def rank(candidate: Candidate) -> tuple[int, Fraction, int, str]:
        # Fraction: exact load ratios, so 1/3 vs 2/6 ties and falls through to the next key.
        load = Fraction(candidate.open_load, candidate.capacity)
        return (-matched(candidate), load, candidate.open_load, candidate.username)

    best = min(eligible, key=rank)
    parts = [why]
    if wanted:
        has = sorted(wanted & {skill.lower() for skill in best.skills})
        parts.append(
            f"has {matched(best)}/{len(wanted)} required skill(s)"
            + (f" ({', '.join(has)})" if has else "")
        )
    parts.append(f"load {best.open_load}/{best.capacity}, lowest of {len(eligible)} available")
    return Assignment(group=group, engineer=best.username, reason="; ".join(parts))
