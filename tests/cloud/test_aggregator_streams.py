"""The aggregator's reassembly limits apply per sender, whatever round number a sender's chunks name."""

from __future__ import annotations

from cloud.aggregator import update_sender_stream
from edge.chunking import ChunkAssembler, split_message


def test_updates_of_one_sender_share_one_stream_across_rounds():
    assert update_sender_stream("dmskd/f/round/3/update/meter-1") == "update/meter-1"
    assert update_sender_stream("dmskd/f/round/99999/update/meter-1") == "update/meter-1"
    assert update_sender_stream("dmskd/f/status/meter-1") == "dmskd/f/status/meter-1"


def test_a_sender_spraying_round_numbers_is_held_to_its_per_stream_bound():
    assembler = ChunkAssembler(max_stream_pending=4)
    for r in range(200):  # one never-completing message per round number
        chunk = split_message(bytes(4096), f"m{r}", 1024)[0]
        assembler.add(chunk, stream=update_sender_stream(f"dmskd/f/round/{r}/update/rogue"))
    assert assembler.pending_streams() == {"update/rogue": 4}
    assert sum(assembler.evictions.values()) == 196
