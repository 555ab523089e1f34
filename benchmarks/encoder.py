"""Benchmark the APT-ViT encoder variants with every phase selector: throughput and the selector's share.

Prints one Markdown table (the format of ``docs/benchmarks.md``): a row per variant and selector, all in
one run so that rows compare as ratios on a shared machine. Examples::

    .venv/bin/python benchmarks/encoder.py --threads 2                   # every variant x selector, CPU
    .venv/bin/python benchmarks/encoder.py --device cuda --batch-size 128   # bf16 autocast on a GPU

Throughput on CPU is samples per process CPU-second (robust on a shared machine; with several threads it
adds the threads' times), on CUDA per wall second. The forward pass is the encoder in eval mode with the
argmax selection; the training step is forward + backward of the whole encoder with the straight-through
Gumbel selection, without an optimizer step. The selector's share is the phase sampler alone (scoring,
selection, roll; in training also its backward, fed the same upstream gradient shape the patch embedding
sends) against the whole encoder in the same mode. FLOPs count matmuls, convolutions and attention (2 per
multiply-add), not FFTs or elementwise work. On CUDA the bf16 matmul rate of the device is measured first
and the training FLOP rate is reported as a share of it (model FLOPs utilisation, MFU).
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

import torch
from torch.utils.flop_counter import FlopCounterMode, sdpa_backward_flop_count, sdpa_flop_count

from aptvit.models import create_encoder, list_encoders
from aptvit.models.vit import APTViT

aten = torch.ops.aten


def _cpu_sdpa_flops(query_shape, key_shape, value_shape, *args, out_shape=None, **kwargs) -> int:
    return sdpa_flop_count(query_shape, key_shape, value_shape)


def _cpu_sdpa_backward_flops(
    grad_shape, query_shape, key_shape, value_shape, *args, out_shape=None, **kwargs
):
    return sdpa_backward_flop_count(grad_shape, query_shape, key_shape, value_shape)


# torch's counter knows the CUDA attention kernels but not the CPU one.
_CPU_ATTENTION_FLOPS = {
    aten._scaled_dot_product_flash_attention_for_cpu: _cpu_sdpa_flops,
    aten._scaled_dot_product_flash_attention_for_cpu_backward: _cpu_sdpa_backward_flops,
}


def count_flops(fn: Callable[[], object]) -> int:
    """Count the floating-point operations of one call (matmuls, convolutions, attention; 2 per MAC)."""
    with FlopCounterMode(display=False, custom_mapping=_CPU_ATTENTION_FLOPS) as counter:
        fn()
    return counter.get_total_flops()


def fastest_seconds(
    calls: dict[str, Callable[[], object]],
    device: torch.device,
    warmup: int,
    repeats: int,
    clock: Callable[[], float] = time.perf_counter,
) -> dict[str, float]:
    """Fastest seconds of each call by ``clock``, the calls interleaved so that they see the same load.

    On a shared CPU the fastest repeat is the figure least disturbed by other jobs; process CPU time
    (``time.process_time``) adds the threads' times, including their spin-waits.
    """
    for call in calls.values():
        for _ in range(warmup):
            call()
    fastest = dict.fromkeys(calls, float("inf"))
    for _ in range(repeats):
        for name, call in calls.items():
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            start = clock()
            call()
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            fastest[name] = min(fastest[name], clock() - start)
    return fastest


def matmul_flop_rate(device: torch.device, dtype: torch.dtype, size: int = 8192) -> float:
    """Measured FLOP/s of a large square matmul, the reference for MFU."""
    a = torch.randn(size, size, device=device, dtype=dtype)
    b = torch.randn(size, size, device=device, dtype=dtype)
    seconds = fastest_seconds({"matmul": lambda: a @ b}, device, warmup=3, repeats=10)["matmul"]
    return 2 * size**3 / seconds


SELECTORS = ("fixed", "norm", "steerable")


def benchmark_variant(
    name: str, phase_selector: str, args: argparse.Namespace, device: torch.device
) -> dict[str, float]:
    """Measure one variant with one selector; returns a row of figures."""
    torch.manual_seed(0)
    model: APTViT = create_encoder(name, phase_selector=phase_selector)
    shape = (args.batch_size, 1, args.box, args.box, args.box)
    volume = torch.randn(shape, device=device)
    upstream = torch.randn(shape, device=device)
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=args.dtype == "bf16")

    one = torch.randn(1, 1, args.box, args.box, args.box)
    model.eval()
    with torch.no_grad():
        flops_forward = count_flops(lambda: model(one))
    model.train()
    flops_train = count_flops(lambda: model(one, phase_mode="gumbel").square().mean().backward())
    model = model.to(device)

    def forward() -> None:
        with torch.no_grad(), autocast:
            model(volume)

    def select() -> None:
        with torch.no_grad(), autocast:
            model.phase_sampler(volume)

    def train_step() -> None:
        model.zero_grad(set_to_none=True)
        with autocast:
            loss = model(volume, phase_mode="gumbel").float().square().mean()
        loss.backward()

    def train_select() -> None:
        model.zero_grad(set_to_none=True)
        with autocast:
            rolled = model.phase_sampler(volume, "gumbel").volume
        if rolled.requires_grad:  # the fixed grid has nothing to back-propagate into
            rolled.backward(upstream)

    model.train()  # drop-path is off by default, so train and eval mode compute alike; selection is explicit
    seconds = fastest_seconds(
        {"forward": forward, "select": select, "train": train_step, "train_select": train_select},
        device,
        args.warmup,
        args.repeats,
        time.process_time if args.clock == "process" else time.perf_counter,
    )
    forward_s, select_s, train_s, train_select_s = seconds.values()
    return {
        "params_M": sum(p.numel() for p in model.parameters()) / 1e6,
        "selector_params": sum(p.numel() for p in model.phase_sampler.parameters()),
        "gflops_forward": flops_forward / 1e9,
        "forward_per_s": args.batch_size / forward_s,
        "train_per_s": args.batch_size / train_s,
        "selector_share_forward": select_s / forward_s,
        "selector_share_train": train_select_s / train_s,
        "train_flop_rate": flops_train * args.batch_size / train_s,
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--variants", nargs="+", default=list_encoders(), choices=list_encoders())
    parser.add_argument("--selectors", nargs="+", default=list(SELECTORS), choices=SELECTORS)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument(
        "--dtype", default=None, choices=["fp32", "bf16"], help="default: bf16 on CUDA, else fp32"
    )
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--box", type=int, default=32, help="edge of the cubic input, voxels")
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=None, help="CPU threads (default: torch's choice)")
    parser.add_argument(
        "--clock", default=None, choices=["wall", "process"], help="default: wall on CUDA, process on CPU"
    )
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    args.dtype = args.dtype or ("bf16" if device.type == "cuda" else "fp32")
    args.clock = args.clock or ("wall" if device.type == "cuda" else "process")
    if args.clock == "process" and device.type == "cuda":
        raise ValueError("--clock process measures CPU time; use --clock wall on CUDA")
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = True
        peak = matmul_flop_rate(device, torch.bfloat16 if args.dtype == "bf16" else torch.float32)
        device_name = torch.cuda.get_device_name(device)
        print(f"device: {device_name}; measured {args.dtype} matmul {peak / 1e12:.1f} TFLOP/s")
    else:
        peak = float("nan")
        print(f"device: cpu, {torch.get_num_threads()} threads; {args.clock} clock")
    print(f"batch {args.batch_size}, box {args.box}³, {args.dtype}, fastest of {args.repeats} after warm-up")
    print()
    print(
        "| variant | selector | params (M) | selector params | GFLOP/sample fwd | fwd samples/s"
        " | fwd+bwd samples/s | selector share fwd | selector share fwd+bwd | MFU (train) |"
    )
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for name in args.variants:
        for phase_selector in args.selectors:
            row = benchmark_variant(name, phase_selector, args, device)
            mfu = f"{row['train_flop_rate'] / peak:.0%}" if device.type == "cuda" else "n/a"
            print(
                f"| {name} | {phase_selector} | {row['params_M']:.2f} | {row['selector_params']:.0f} "
                f"| {row['gflops_forward']:.2f} | {row['forward_per_s']:.1f} | {row['train_per_s']:.1f} "
                f"| {row['selector_share_forward']:.1%} | {row['selector_share_train']:.1%} | {mfu} |",
                flush=True,
            )


if __name__ == "__main__":
    main()
