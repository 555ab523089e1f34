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
sends) against the whole encoder in the same mode; the scorer's share is the scoring alone (scorer and
standardisation, forward + backward from the scores) against the training step. FLOPs count matmuls,
convolutions and attention (2 per multiply-add), not FFTs or elementwise work. On CUDA the bf16 matmul
rate of the device is measured first and the training FLOP rate is reported as a share of it (model FLOPs
utilisation, MFU).
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

import torch
from torch.utils.flop_counter import FlopCounterMode, sdpa_backward_flop_count, sdpa_flop_count

from aptvit.models import create_encoder, list_encoders, phase_offsets_zyx, roll_volume_zyx
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


# Row label -> (phase_selector, scorer_kwargs): the steerable scorer also with its noise-robust centring term.
SELECTORS = {
    "fixed": ("fixed", None),
    "norm": ("norm", None),
    "steerable": ("steerable", None),
    "steerable_centring": ("steerable", {"centring_weight": 1.0}),
}
SCORE_DTYPES = (torch.float32, torch.bfloat16)


def benchmark_variant(
    name: str, selector: str, args: argparse.Namespace, device: torch.device
) -> dict[str, float]:
    """Measure one variant with one selector (a key of ``SELECTORS``); returns a row of figures."""
    torch.manual_seed(0)
    phase_selector, scorer_kwargs = SELECTORS[selector]
    model: APTViT = create_encoder(name, phase_selector=phase_selector, scorer_kwargs=scorer_kwargs)
    # Batches the CPU can time in minutes: the p = 4 transformers cost ~10x the p = 8 ones per sample.
    batch_size = args.batch_size or (8 if model.patch_size < 8 else 32)
    shape = (batch_size, 1, args.box, args.box, args.box)
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

    sampler = model.phase_sampler
    upstream_scores = torch.randn(batch_size, model.patch_size**3, device=device)

    def train_score() -> None:
        model.zero_grad(set_to_none=True)
        if sampler.scorer is not None:  # the fixed grid scores nothing
            with autocast:
                scores = sampler.score_phases(volume)
            scores.backward(upstream_scores)

    model.train()  # drop-path is off by default, so train and eval mode compute alike; selection is explicit
    seconds = fastest_seconds(
        {
            "forward": forward,
            "select": select,
            "train": train_step,
            "train_select": train_select,
            "train_score": train_score,
        },
        device,
        args.warmup,
        args.repeats,
        time.process_time if args.clock == "process" else time.perf_counter,
    )
    forward_s, select_s, train_s, train_select_s, train_score_s = seconds.values()
    return {
        "params_M": sum(p.numel() for p in model.parameters()) / 1e6,
        "selector_params": sum(p.numel() for p in model.phase_sampler.parameters()),
        "gflops_forward": flops_forward / 1e9,
        "batch_size": batch_size,
        "forward_per_s": batch_size / forward_s,
        "train_per_s": batch_size / train_s,
        "selector_share_forward": select_s / forward_s,
        "selector_share_train": train_select_s / train_s,
        "scorer_share_train": train_score_s / train_s,
        "train_flop_rate": flops_train * batch_size / train_s,
    }


def shift_consistency(patch_size: int, dtype: torch.dtype, num_volumes: int, box: int) -> float:
    """Share of random volumes whose picked phase follows a random circular shift, scores in ``dtype``.

    The pick of the shifted volume must be ``(k* + s) mod p``; a tie or a near-tie that round-off flips
    breaks it (and with it the exact shift equivariance of the tokens).
    """
    torch.manual_seed(1)
    scorer = create_encoder("aptvit_nano_p8", patch_size=patch_size).phase_sampler.scorer
    assert scorer is not None
    scorer = scorer.to(dtype)
    volume = torch.randn(num_volumes, 1, box, box, box)
    shifts = torch.randint(0, box, (num_volumes, 3))
    shifted = roll_volume_zyx(volume, shifts)
    offsets = phase_offsets_zyx(patch_size)
    with torch.no_grad():
        picked = offsets[scorer(volume.to(dtype), patch_size).argmax(dim=1)]
        picked_shifted = offsets[scorer(shifted.to(dtype), patch_size).argmax(dim=1)]
    return (picked_shifted == (picked + shifts) % patch_size).all(dim=1).float().mean().item()


def selection_agreement(selector: str, patch_size: int, snr: float, num_volumes: int, box: int) -> float:
    """Share of synthetic particles whose clean and noisy views pick the same phase (argmax, untrained).

    Clean views are white noise low-passed by a Gaussian of 2 voxels (unit variance), noisy views add
    white noise of variance ``1 / snr``; chance is ``1 / p³``.
    """
    torch.manual_seed(2)
    phase_selector, scorer_kwargs = SELECTORS[selector]
    encoder = create_encoder(
        "aptvit_nano_p8", patch_size=patch_size, phase_selector=phase_selector, scorer_kwargs=scorer_kwargs
    )
    sampler = encoder.phase_sampler
    frequencies = torch.stack(
        torch.meshgrid(torch.fft.fftfreq(box), torch.fft.fftfreq(box), torch.fft.rfftfreq(box), indexing="ij")
    )
    low_pass = torch.exp(-2 * (torch.pi * 2.0) ** 2 * frequencies.square().sum(dim=0))
    spectrum = torch.fft.rfftn(torch.randn(num_volumes, 1, box, box, box), dim=(2, 3, 4)) * low_pass
    clean = torch.fft.irfftn(spectrum, s=(box,) * 3, dim=(2, 3, 4))
    clean = clean / clean.std(dim=(2, 3, 4), keepdim=True)
    noisy = clean + torch.randn_like(clean) / snr**0.5
    with torch.no_grad():
        agree = sampler(clean).offsets_zyx == sampler(noisy).offsets_zyx
    return agree.all(dim=1).float().mean().item()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--variants", nargs="+", default=list_encoders(), choices=list_encoders())
    parser.add_argument("--selectors", nargs="+", default=list(SELECTORS), choices=list(SELECTORS))
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument(
        "--dtype", default=None, choices=["fp32", "bf16"], help="default: bf16 on CUDA, else fp32"
    )
    parser.add_argument("--batch-size", type=int, default=None, help="default: 8 for p = 4, 32 for p = 8")
    parser.add_argument("--box", type=int, default=32, help="edge of the cubic input, voxels")
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=None, help="CPU threads (default: torch's choice)")
    parser.add_argument(
        "--ties", type=int, default=256, help="random volumes for the shift-consistency check (0: skip)"
    )
    parser.add_argument(
        "--agreement", type=int, default=512, help="synthetic particles, clean/noisy agreement (0: skip)"
    )
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
    print(f"box {args.box}³, {args.dtype}, fastest of {args.repeats} after {args.warmup} warm-up call(s)")
    print()
    print(
        "| variant | selector | batch | params (M) | selector params | GFLOP/sample fwd | fwd samples/s"
        " | fwd+bwd samples/s | selector share fwd | selector share fwd+bwd | scorer share fwd+bwd"
        " | MFU (train) |"
    )
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for name in args.variants:
        for phase_selector in args.selectors:
            row = benchmark_variant(name, phase_selector, args, device)
            mfu = f"{row['train_flop_rate'] / peak:.0%}" if device.type == "cuda" else "n/a"
            print(
                f"| {name} | {phase_selector} | {row['batch_size']} | {row['params_M']:.2f} "
                f"| {row['selector_params']:.0f} "
                f"| {row['gflops_forward']:.2f} | {row['forward_per_s']:.1f} | {row['train_per_s']:.1f} "
                f"| {row['selector_share_forward']:.1%} | {row['selector_share_train']:.1%} "
                f"| {row['scorer_share_train']:.1%} | {mfu} |",
                flush=True,
            )
    if args.ties:
        print()
        print(f"Picked phase follows a random circular shift ({args.ties} random volumes, steerable scorer):")
        print()
        print("| patch size | float32 | bfloat16 |")
        print("|---:|---:|---:|")
        for patch_size in (4, 8):
            shares = [shift_consistency(patch_size, dtype, args.ties, args.box) for dtype in SCORE_DTYPES]
            print(f"| {patch_size} | " + " | ".join(f"{share:.1%}" for share in shares) + " |", flush=True)
    if args.agreement:
        print()
        print(f"Clean and noisy views pick the same phase ({args.agreement} synthetic particles, untrained):")
        print()
        print("| patch size | selector | chance | SNR 10 | SNR 1 | SNR 0.1 |")
        print("|---:|---|---:|---:|---:|---:|")
        for patch_size in (4, 8):
            for phase_selector in ("norm", "steerable", "steerable_centring"):
                shares = [
                    selection_agreement(phase_selector, patch_size, snr, args.agreement, args.box)
                    for snr in (10.0, 1.0, 0.1)
                ]
                print(
                    f"| {patch_size} | {phase_selector} | {1 / patch_size**3:.1%} | "
                    + " | ".join(f"{share:.1%}" for share in shares)
                    + " |",
                    flush=True,
                )


if __name__ == "__main__":
    main()
