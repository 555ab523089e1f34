"""Benchmark the APT-ViT encoder variants: parameters, FLOPs per sample, throughput and the selector's share.

Prints one Markdown table row per variant (the format of ``docs/benchmarks.md``). Examples::

    .venv/bin/python benchmarks/encoder.py                                   # every variant, CPU, fp32
    .venv/bin/python benchmarks/encoder.py --device cuda --dtype bf16 --batch-size 128

Throughput on CPU is samples per process CPU-second (robust on a shared machine), on CUDA per wall second.
Training throughput is forward + backward of the whole encoder in train mode (Gumbel-softmax selection),
without an optimizer step. On CUDA the bf16 matmul rate of the device is measured first and the training
FLOP rate is reported as a share of it (model FLOPs utilisation, MFU).
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


def seconds_per_call(fn: Callable[[], object], device: torch.device, warmup: int, repeats: int) -> float:
    """Fastest wall-clock seconds of one call after warm-up (CUDA), or fastest process CPU seconds (CPU).

    On a shared CPU the fastest repeat and process time are the figures least disturbed by other jobs;
    with several threads, process time adds the threads' times (compare runs with the same ``--threads``).
    """
    clock = time.perf_counter if device.type == "cuda" else time.process_time
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        start = clock()
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        times.append(clock() - start)
    return min(times)


def matmul_flop_rate(device: torch.device, dtype: torch.dtype, size: int = 8192) -> float:
    """Measured FLOP/s of a large square matmul, the reference for MFU."""
    a = torch.randn(size, size, device=device, dtype=dtype)
    b = torch.randn(size, size, device=device, dtype=dtype)
    seconds = seconds_per_call(lambda: a @ b, device, warmup=3, repeats=10)
    return 2 * size**3 / seconds


def benchmark_variant(name: str, args: argparse.Namespace, device: torch.device) -> dict[str, float]:
    """Measure one variant; returns a row of figures."""
    torch.manual_seed(0)
    scorer_kwargs = {"irreps_hidden": args.scorer_irreps} if args.scorer_irreps else None
    model: APTViT = create_encoder(name, phase_selector=args.phase_selector, scorer_kwargs=scorer_kwargs)
    model = model.to(device)
    shape = (args.batch_size, 1, args.box, args.box, args.box)
    volume = torch.randn(shape, device=device)
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=args.dtype == "bf16")

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
        if rolled.requires_grad:  # parameter-free selectors have nothing to back-propagate into
            rolled.float().square().mean().backward()

    one = torch.randn(1, 1, args.box, args.box, args.box)
    cpu_model = model.to("cpu")
    cpu_model.eval()
    with torch.no_grad():
        flops_forward = count_flops(lambda: cpu_model(one))
        flops_selector = count_flops(lambda: cpu_model.phase_sampler(one))
    cpu_model.train()
    flops_train = count_flops(lambda: cpu_model(one, phase_mode="gumbel").square().mean().backward())
    model = cpu_model.to(device)

    model.eval()
    forward_s = seconds_per_call(forward, device, args.warmup, args.repeats)
    select_s = seconds_per_call(select, device, args.warmup, args.repeats)
    model.train()
    train_s = seconds_per_call(train_step, device, args.warmup, args.repeats)
    train_select_s = seconds_per_call(train_select, device, args.warmup, args.repeats)
    return {
        "params_M": sum(p.numel() for p in model.parameters()) / 1e6,
        "selector_params": sum(p.numel() for p in model.phase_sampler.parameters()),
        "gflops_forward": flops_forward / 1e9,
        "gflops_train": flops_train / 1e9,
        "selector_flops_share": flops_selector / flops_forward,
        "forward_per_s": args.batch_size / forward_s,
        "train_per_s": args.batch_size / train_s,
        "selector_time_share_forward": select_s / forward_s,
        "selector_time_share_train": train_select_s / train_s,
        "train_flop_rate": flops_train * args.batch_size / train_s,
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--variants", nargs="+", default=list_encoders(), choices=list_encoders())
    parser.add_argument("--phase-selector", default="steerable", choices=["steerable", "norm", "fixed"])
    parser.add_argument("--scorer-irreps", default=None, help="hidden irreps of the steerable scorer")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument(
        "--dtype", default=None, choices=["fp32", "bf16"], help="default: bf16 on CUDA, else fp32"
    )
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--box", type=int, default=32, help="edge of the cubic input, voxels")
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=None, help="CPU threads (default: torch's choice)")
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    args.dtype = args.dtype or ("bf16" if device.type == "cuda" else "fp32")
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = True
        peak = matmul_flop_rate(device, torch.bfloat16 if args.dtype == "bf16" else torch.float32)
        name = torch.cuda.get_device_name(device)
        print(f"device: {name}; measured {args.dtype} matmul {peak / 1e12:.1f} TFLOP/s")
    else:
        peak = float("nan")
        print(f"device: cpu, {torch.get_num_threads()} threads; times are process CPU seconds")
    selector = f"{args.phase_selector} {args.scorer_irreps or ''}".strip()
    print(f"batch {args.batch_size}, box {args.box}³, {args.dtype}, selector {selector}")
    print()
    print(
        "| variant | params (M) | GFLOP/sample fwd | GFLOP/sample fwd+bwd | selector FLOP share"
        " | fwd samples/s | fwd+bwd samples/s | selector time share fwd / fwd+bwd | MFU (train) |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for name in args.variants:
        row = benchmark_variant(name, args, device)
        mfu = f"{row['train_flop_rate'] / peak:.0%}" if device.type == "cuda" else "n/a"
        print(
            f"| {name} | {row['params_M']:.2f} | {row['gflops_forward']:.2f} | {row['gflops_train']:.2f} "
            f"| {row['selector_flops_share']:.1%} | {row['forward_per_s']:.1f} | {row['train_per_s']:.1f} "
            f"| {row['selector_time_share_forward']:.0%} / {row['selector_time_share_train']:.0%} | {mfu} |",
            flush=True,
        )


if __name__ == "__main__":
    main()
