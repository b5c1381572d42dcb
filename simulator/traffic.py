"""Bytes on the wire, from the payloads each device's MQTT client sent and received."""

from __future__ import annotations

from edge.mqtt_session import TrafficRecord


def traffic_summary(device_traffic: dict[str, list[TrafficRecord]], rounds: int) -> dict:
    """Per-round uplink/downlink, shard and program bytes, and the total of every payload byte."""
    records = [r for recs in device_traffic.values() for r in recs]

    def total(direction: str, pred) -> int:
        return sum(r.nbytes for r in records if r.direction == direction and pred(r.topic))

    up = [total("up", lambda t, r=r: f"/round/{r}/update/" in t) for r in range(rounds)]
    down = [total("down", lambda t, r=r: t.endswith(f"/model/{r}")) for r in range(rounds)]
    return {
        "bytes_up_per_round": up,
        "bytes_down_per_round": down,
        "shard_bytes_total": total("down", lambda t: "/shard/" in t),
        "student_program_bytes_total": total("down", lambda t: "/student/" in t),
        "bytes_total": sum(r.nbytes for r in records),
    }


def fedavg_bytes(teacher_params: int, devices: int, rounds: int) -> dict:
    """What plain FedAvg on the full float32 teacher would move: download + upload per device per round."""
    per_round = 2 * devices * teacher_params * 4
    return {"fedavg_bytes_per_round": per_round, "fedavg_bytes_total": per_round * rounds}
