"""Encoder speed: torch fp32 vs ONNX Runtime fp32 and int8, items/s per tower at batch 1
and 32, and how far int8 embeddings drift from fp32 (cosine on the same batch).

Times the model forward on preprocessed inputs (decode/resize/tokenize excluded; they are
the same code for every runtime). Same inputs, same thread count, same run.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from benchmarks._report import RESULTS, markdown_table, write
from mmsearch.encoders import load_encoder
from mmsearch.encoders.data.records import read_manifest
from mmsearch.encoders.preprocess import image_to_array, load_rgb


def items_per_second(run, batch: int, repeats: int) -> float:  # noqa: ANN001
    run()  # warm-up
    run()
    start = time.perf_counter()
    for _ in range(repeats):
        run()
    return batch * repeats / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--data", type=Path, default=Path("data/emoji"))
    parser.add_argument("--model-dir", type=Path, default=Path("models/emoji-v1"))
    parser.add_argument("--export-dir", type=Path, default=Path("models/export/emoji-v1"))
    parser.add_argument("--repeats-b1", type=int, default=40)
    parser.add_argument("--repeats-b32", type=int, default=6)
    args = parser.parse_args()

    records = list(read_manifest(args.data / "google.jsonl"))[:32]
    runtimes = {"torch fp32": load_encoder("torch", model_dir=args.model_dir),
                "onnxruntime fp32": load_encoder("onnx", export_dir=args.export_dir)}
    if "image.int8.onnx" in runtimes["onnxruntime fp32"].manifest.files:  # type: ignore[attr-defined]
        runtimes["onnxruntime int8"] = load_encoder("onnx", export_dir=args.export_dir,
                                                    precision="int8")
    first = next(iter(runtimes.values()))
    pixels = np.stack([image_to_array(load_rgb(args.data / r.image), first.image_spec)
                       for r in records])
    captions = [str(r.text) for r in records]
    rows, results = [], []
    for batch in (1, 32):
        tokens = first.tokenizer(captions[:batch])
        repeats = args.repeats_b1 if batch == 1 else args.repeats_b32
        for name, encoder in runtimes.items():
            image_rate = items_per_second(
                lambda enc=encoder, b=batch: enc._image_forward(pixels[:b]), batch, repeats)
            text_rate = items_per_second(
                lambda enc=encoder, t=tokens: enc._text_forward(t.input_ids, t.attention_mask),
                batch, repeats)
            for tower, rate in (("image", image_rate), ("text", text_rate)):
                results.append({"runtime": name, "tower": tower, "batch": batch,
                                "items_per_s": rate, "provider": encoder.provider})
                rows.append((tower, batch, name, encoder.provider, rate))
    for row in list(rows):
        if row[2].startswith("onnxruntime"):
            ref = next(r for r in rows if r[:2] == row[:2] and r[2] == "torch fp32")
            results.append({"ratio_onnx_over_torch": row[4] / ref[4], "tower": row[0],
                            "batch": row[1], "runtime": row[2]})
    drift = int8_drift(runtimes, pixels, first.tokenizer(captions))
    table = markdown_table(("tower", "batch", "runtime", "provider", "items/s"), rows)
    ratios = "\n".join(f"- {r['tower']} batch {r['batch']}: {r['runtime']} / torch fp32 = "
                       f"{r['ratio_onnx_over_torch']:.2f}x" for r in results
                       if "ratio_onnx_over_torch" in r)
    ratios += "".join(f"\n- int8 vs fp32 {tower} embeddings (batch 32): cosine min "
                      f"{d['min']:.4f}, mean {d['mean']:.4f}" for tower, d in drift.items())
    size = first.config.image_tower.input_size
    intro = (f"# Encoder speed\n\nModel forward only (image {size}x{size}, text = emoji "
             "captions padded to the batch's longest), default thread count.\n\n")
    write("encoder_speed", {"results": results, "int8_cosine": drift},
          intro + table + "\n\n" + ratios + "\n\n![items/s](encoder_speed.png)")
    plot(results)
    print(intro + table + "\n\n" + ratios)


def int8_drift(runtimes: dict, pixels: np.ndarray, tokens) -> dict:  # noqa: ANN001
    """Cosine between ONNX fp32 and int8 outputs on the same preprocessed batch."""
    if "onnxruntime int8" not in runtimes:
        return {}
    from mmsearch.encoders.quantize import cosine_agreement

    fp32, int8 = runtimes["onnxruntime fp32"], runtimes["onnxruntime int8"]
    pairs = {"image": (fp32._image_forward(pixels)[0], int8._image_forward(pixels)[0]),
             "text": (fp32._text_forward(tokens.input_ids, tokens.attention_mask),
                      int8._text_forward(tokens.input_ids, tokens.attention_mask))}
    out = {}
    for tower, (a, b) in pairs.items():
        cosine = cosine_agreement(a, b)
        out[tower] = {"min": float(cosine.min()), "mean": float(cosine.mean())}
    return out


def plot(results: list[dict]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [r for r in results if "items_per_s" in r]
    labels = [f"{r['tower']} b{r['batch']}\n{r['runtime']}" for r in rows]
    fig, ax = plt.subplots(figsize=(8, 4))
    ax.bar(range(len(rows)), [r["items_per_s"] for r in rows],
           color=["C0" if "torch" in r["runtime"] else "C2" if "int8" in r["runtime"]
                  else "C1" for r in rows])
    ax.set_xticks(range(len(rows)), labels, fontsize=7)
    ax.set_ylabel("items/s (log)")
    ax.set_yscale("log")
    ax.set_title("Encoder throughput: torch fp32 (blue), ONNX Runtime fp32 (orange), "
                 "int8 (green)", fontsize=9)
    fig.tight_layout()
    fig.savefig(RESULTS / "encoder_speed.png", dpi=120)


if __name__ == "__main__":
    main()
