"""List pages: filters, sort and pagination, all the API's own.

A :class:`Listing` names a List operation and the member holding its summaries; the filter form, the
sortable columns and the status choices come from that operation's input shape (its ``SortBy`` and status
enums), so a page offers exactly what the API accepts. One page of a list is one List call: its NextToken
goes into the "next page" link, and the summaries it answers are what the table shows (no Describe per row).
The query string carries ``name``, ``status``, ``after``, ``before`` (dates, UTC: the operation's
CreationTimeAfter/Before or CreatedAfter/Before, where it has them), ``sort``, ``order`` and ``token``; whatever
they hold is validated by the operation itself, like any API input.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

from ..server.errors import validation
from ..server.models import operation_model
from .web import PREFIX, View

PAGE_SIZE = 25
# The input members a List operation spells its creation-time bounds with (the first it has is used).
AFTER = ("CreationTimeAfter", "CreatedAfter")
BEFORE = ("CreationTimeBefore", "CreatedBefore")


def _day(text: str, what: str) -> float:
    """A YYYY-MM-DD date (as a date input sends it) as the epoch seconds of its midnight, UTC."""
    try:
        day = dt.date.fromisoformat(text)
    except ValueError:
        raise validation(f"The {what} date {text[:40]!r} is not a date (YYYY-MM-DD).") from None
    return dt.datetime(day.year, day.month, day.day, tzinfo=dt.UTC).timestamp()


@dataclass
class Listing:
    operation: str
    items: str  # the output member with the summaries
    name_filter: str | None = "NameContains"  # the input member the name box fills, if any
    status_filter: str | None = "StatusEquals"  # the input member the status choice fills, if any
    default_sort: str = "CreationTime"
    fixed: dict = field(default_factory=dict)  # input every page of this list carries

    def _enum(self, member: str | None) -> list[str]:
        shape = operation_model("sagemaker", self.operation).input_shape.members.get(member or "")
        return list(getattr(shape, "enum", None) or [])

    def _member(self, spellings: tuple[str, ...]) -> str | None:
        members = operation_model("sagemaker", self.operation).input_shape.members
        return next((m for m in spellings if m in members and m not in self.fixed), None)

    async def fetch(self, view: View, **fixed) -> ListPage:
        name, status = view.query("name"), view.query("status")
        sorts = self._enum("SortBy")
        sort = view.query("sort", self.default_sort if self.default_sort in sorts else "")
        order = view.query("order", "Descending")
        params = {**self.fixed, **fixed, "MaxResults": PAGE_SIZE}
        if name and self.name_filter:
            params[self.name_filter] = name
        if status and self.status_filter:
            params[self.status_filter] = status
        after, before = view.query("after"), view.query("before")
        after_member, before_member = self._member(AFTER), self._member(BEFORE)
        if after and after_member:
            params[after_member] = _day(after, "created after")
        if before and before_member:
            params[before_member] = _day(before, "created before") + 86_400  # the whole of that day
        if sorts:
            params["SortBy"] = sort
            params["SortOrder"] = order
        if token := view.query("token"):
            params["NextToken"] = token
        answer = await view.call(self.operation, params)
        return ListPage(
            items=answer.get(self.items, []),
            next_token=answer.get("NextToken"),
            name=name,
            status=status,
            after=after if after_member else "",
            before=before if before_member else "",
            has_time_filter=bool(after_member and before_member),
            sort=sort,
            order=order,
            first_page=not token,
            sorts=sorts,
            statuses=self._enum(self.status_filter),
            has_name_filter=bool(self.name_filter),
            path=view.request.path.removeprefix(PREFIX),
        )


@dataclass
class ListPage:
    """What a list template needs: the rows, and the state of its filters, sort and pagination."""

    items: list
    next_token: str | None
    name: str
    status: str
    after: str
    before: str
    has_time_filter: bool
    sort: str
    order: str
    first_page: bool
    sorts: list[str]
    statuses: list[str]
    has_name_filter: bool
    path: str

    def filters(self, **changes) -> dict:
        """The query of this list with ``changes`` (a new sort, a next page token)."""
        current = {
            "name": self.name,
            "status": self.status,
            "after": self.after,
            "before": self.before,
            "sort": self.sort,
            "order": self.order,
        }
        return {k: v for k, v in {**current, **changes}.items() if v}

    def sort_query(self, column: str) -> dict:
        """Sorting by ``column``: a click on the current column flips the order."""
        flipped = "Ascending" if self.order == "Descending" else "Descending"
        return self.filters(sort=column, order=flipped if column == self.sort else "Descending")

    def aria_sort(self, column: str) -> str:
        if column != self.sort:
            return "none"
        return "ascending" if self.order == "Ascending" else "descending"
