"""What a precision costs here (issue 21): the run's memory estimate follows its precision and checkpointing, and
bf16's speed against fp32 is measured on this device (on a CPU without bf16 units it is several times slower:
benchmarks/results/precision_speed.md)."""

from __future__ import annotations

import pytest

from explorer.engine.config import TrainConfig
from explorer.engine.speed import PrecisionSpeed, precision_speed
from explorer.memory.analytic import estimate
from explorer.memory.specs import spec_for
from explorer.workshop.jobs import estimate_run_bytes, estimate_run_label


@pytest.mark.parametrize("prec,ckpt,mem", [("fp32", False, "fp32"), ("bf16", False, "bf16-autocast"),
                                           ("bf16", True, "bf16-autocast"), ("fp32", True, "fp32")])
def test_the_run_estimate_follows_precision_and_checkpointing(prec, ckpt, mem):
    cfg = TrainConfig(model="tiny-bert", method="lora", batch_size=16, max_len=64, precision=prec, checkpointing=ckpt)
    want = estimate(spec_for("tiny-bert"), "lora", {}, precision=mem, checkpointing=ckpt, batch=16, seq_len=64,
                    device="cpu")["total_bytes"]
    assert estimate_run_bytes(cfg) == pytest.approx(want, rel=0, abs=0.5)
    label = estimate_run_label(cfg)
    assert label.startswith("analytic, " + ("fp32" if prec == "fp32" else "bf16 autocast"))
    assert ("checkpointing" in label) == ckpt


def test_bf16_with_checkpointing_estimates_less_than_fp32():
    base = dict(model="minilm", method="full", batch_size=16, max_len=64)
    fp32 = estimate_run_bytes(TrainConfig(**base))
    bf16_ck = estimate_run_bytes(TrainConfig(**base, precision="bf16", checkpointing=True))
    assert bf16_ck < fp32


def test_speed_line_says_slower_faster_or_even():
    def s(ratio):
        return PrecisionSpeed(device="cpu", threads=1, fp32_s=0.01, bf16_s=0.01 * ratio, reps=4, bf16_units=None)

    assert s(2.4).text() == "bf16 on this CPU: 2.4× slower than fp32 (measured)" and s(2.4).slow
    assert s(0.7).text() == "bf16 on this CPU: 1.4× faster than fp32 (measured)" and not s(0.7).slow
    assert s(1.05).text() == "bf16 on this CPU: about as fast as fp32 (measured)"


def test_the_probe_measures_once_per_process():
    precision_speed.cache_clear()
    a = precision_speed("cpu", threads=1)
    assert a.fp32_s > 0 and a.bf16_s > 0 and a.threads == 1 and a.device == "cpu"
    assert precision_speed("cpu", threads=1) is a  # cached: the page pays for it once
    assert a.to_dict()["text"] == a.text()
