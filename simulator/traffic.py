"""Bytes on the wire, from the payloads each device's MQTT client sent and received."""

from __future__ import annotations

from edge.mqtt_session import TrafficRecord


def traffic_summary(device_traffic: dict[str, list[TrafficRecord]], rounds: int) -> dict:
    """Per-round uplink/downlink, shard and program bytes, and the total of every payload byte."""
    records = [r for recs in device_traffic.values() for r in recs]

    def total(direction: str, pred) -> int:
        return sum(r.nbytes for r in records if r.direction == direction and pred(r.topic))

    up = [total("up", lambda t, r=r: f"/round/{r}/update/" in t) for r in range(rounds)]
    # round r trains version r: its whole model, or the quantised step to it (edge.model_step)
    down = [total("down", lambda t, r=r: t.endswith(f"/model/{r}")) for r in range(rounds)]
    for r, nbytes in steps_by_version(device_traffic):
        if r < rounds:
            down[r] += nbytes
    return {
        "bytes_up_per_round": up,
        "bytes_down_per_round": down,
        "shard_bytes_total": total("down", lambda t: "/shard/" in t),
        "student_program_bytes_total": total("down", lambda t: "/student/" in t),
        "bytes_total": sum(r.nbytes for r in records),
    }


def steps_by_version(device_traffic: dict[str, list[TrafficRecord]]) -> list[tuple[int, int]]:
    """(version, bytes) of every model step a device received. Steps share one retained topic, so a device's
    k-th step is taken as version k (steps start at version 1); a step received again (a resync) counts as
    the next version's, which moves bytes between rounds but never loses any."""
    out: list[tuple[int, int]] = []
    for records in device_traffic.values():
        steps = [r.nbytes for r in records if r.direction == "down" and r.topic.endswith("/step")]
        out.extend((k + 1, nbytes) for k, nbytes in enumerate(steps))
    return out


def mqtt_publish_bytes(chunk_topic: str, payload_bytes: int) -> int:
    """Bytes of one QoS 1 PUBLISH on the wire (MQTT 3.1.1): fixed header, remaining length, topic, packet id,
    payload; plus the 4-byte PUBACK that answers it."""
    remaining = 2 + len(chunk_topic.encode()) + 2 + payload_bytes
    length_bytes = 1 if remaining < 128 else 2 if remaining < 16_384 else 3 if remaining < 2_097_152 else 4
    return 1 + length_bytes + remaining + 4


def update_wire_bytes(device_traffic: dict[str, list[TrafficRecord]], rounds: int) -> float:
    """Mean bytes one device's update costs per round, MQTT included (each record is one chunk's PUBLISH)."""
    ups = [mqtt_publish_bytes(f"{r.topic}/0", r.nbytes) for recs in device_traffic.values() for r in recs
           if r.direction == "up" and "/update/" in r.topic]
    return sum(ups) / max(1, len(device_traffic) * rounds)


def model_step_wire_bytes(device_traffic: dict[str, list[TrafficRecord]]) -> float:
    """Mean bytes one download of the global model's step costs a device, MQTT included (edge.model_step)."""
    downs = [mqtt_publish_bytes(f"{r.topic}/0", r.nbytes) for recs in device_traffic.values() for r in recs
             if r.direction == "down" and r.topic.endswith("/step")]
    return sum(downs) / max(1, len(downs))


def fedavg_bytes(teacher_params: int, devices: int, rounds: int) -> dict:
    """What plain FedAvg on the full float32 teacher would move: download + upload per device per round."""
    per_round = 2 * devices * teacher_params * 4
    return {"fedavg_bytes_per_round": per_round, "fedavg_bytes_total": per_round * rounds}
