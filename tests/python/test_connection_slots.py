"""The handshake slots of `ConnectionGuard` on their own: turns by address, an address's share,
and a long run of connections whose clients left while they waited."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, cast

from sztp_server.connections import ConnectionGuard, ConnectionLimits
from sztp_server.metrics import Metrics


@dataclass
class Waiting:
    """Stands in for a connection waiting for a slot; `present` False: its client left."""

    address: str
    present: bool = True
    turns: list[str] = field(default_factory=list)

    def take_turn(self) -> bool:
        if self.present:
            self.turns.append(self.address)
        return self.present


def slots(limit: int) -> Any:
    limits = ConnectionLimits(head_timeout=10, idle_timeout=10, max_handshakes=limit)
    return ConnectionGuard("device", limits, Metrics()).handshakes


def request(handshakes: Any, connection: Waiting) -> bool:
    return cast(bool, handshakes.request(connection))


def test_a_long_run_of_departed_clients_passes_the_slot_on_without_recursion() -> None:
    handshakes = slots(8)
    first = [Waiting(f"10.0.0.{index}") for index in range(8)]
    assert all(request(handshakes, connection) for connection in first)
    departed = [
        Waiting(f"10.1.{index // 250}.{index % 250}", present=False) for index in range(5000)
    ]
    last = Waiting("10.2.0.1")
    assert not any(request(handshakes, connection) for connection in [*departed, last])
    handshakes.give_back("10.0.0.0")
    assert last.turns == ["10.2.0.1"]
    assert handshakes.held == 8
    assert not handshakes.waiting


def test_one_address_holds_an_eighth_and_addresses_take_turns() -> None:
    handshakes = slots(16)
    flood = [Waiting("10.0.0.5") for _ in range(10)]
    assert [request(handshakes, connection) for connection in flood] == [True] * 2 + [False] * 8
    device = Waiting("10.0.0.9")
    assert request(handshakes, device)  # free slots: the flood's share does not hold it back
    assert handshakes.held == 3
    assert all(request(handshakes, Waiting(f"10.0.2.{index}")) for index in range(13))
    others = [Waiting("10.0.1.1"), Waiting("10.0.1.1"), Waiting("10.0.1.2")]
    assert not any(request(handshakes, connection) for connection in others)
    # The flood waited first but holds its share; then each address in turn.
    handshakes.give_back("10.0.2.0")
    handshakes.give_back("10.0.2.1")
    assert [others[0].turns, others[1].turns, others[2].turns] == [["10.0.1.1"], [], ["10.0.1.2"]]
    assert not any(connection.turns for connection in flood[2:])
