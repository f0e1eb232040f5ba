"""PSAs whose statuses are global (Autotask, HaloPSA) show one board, with id None."""

from __future__ import annotations

from writeback.domain.errors import PsaRejected
from writeback.domain.model import Board

ALL_TICKETS = Board(id=None, name="All tickets")


def require_no_board(vendor: str, board_id: int | None) -> None:
    if board_id is not None:
        raise PsaRejected(f"{vendor} has no boards: its statuses are global")
