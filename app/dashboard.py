"""lss-cl dashboard: what the distilled memories hold and what they buy.

Reads run folders only (no training here). Start with ``lss-cl dashboard --runs DIR`` or
``LSS_CL_RUNS=DIR streamlit run app/dashboard.py``.
"""

from __future__ import annotations

import os
import statistics
from collections import defaultdict
from pathlib import Path

import altair as alt
import numpy as np
import pandas as pd
import streamlit as st

from lss_cl.runs import RunInfo, budget_breakdown, find_runs, memory_header

st.set_page_config(page_title="lss-cl dashboard", layout="wide")


@st.cache_data(ttl=2, show_spinner=False)
def load_runs(root: str) -> list[RunInfo]:
    return find_runs(root)


@st.cache_resource(show_spinner=False)
def display_normalizer(dataset: str, zca: bool):
    """Normaliser to undo for display (ZCA needs the dataset); None if the data is not here."""
    from lss_cl.data import load_dataset
    from lss_cl.errors import LssError
    from lss_cl.transforms import Normalizer

    try:
        return Normalizer.for_dataset(load_dataset(dataset), zca=zca)
    except LssError:
        return None


def to_uint8(x) -> np.ndarray:
    """(n, C, H, W) float in [0, 1] → (n, H, W, C) uint8, upscaled ×3 for visibility."""
    arr = (x.clamp(0, 1) * 255).round().byte().permute(0, 2, 3, 1).numpy()
    return arr.repeat(3, axis=1).repeat(3, axis=2)


def heat(m) -> np.ndarray:
    """A 2-D tensor as a grey image, min-max scaled, upscaled ×6."""
    a = m.detach().float().numpy()
    a = (a - a.min()) / (np.ptp(a) or 1.0)
    return (a * 255).astype(np.uint8).repeat(6, axis=0).repeat(6, axis=1)


def runs_tab(runs: list[RunInfo]) -> list[RunInfo]:
    bad = [r for r in runs if r.status == "corrupt"]
    for r in bad:
        st.error(f"corrupt run {r.path}: {r.error}")
    c1, c2, c3 = st.columns(3)
    scen = c1.multiselect("scenario", sorted({r.scenario for r in runs}))
    strat = c2.multiselect("strategy", sorted({r.strategy for r in runs}))
    stat = c3.multiselect("status", sorted({r.status for r in runs}))
    shown = [r for r in runs if (not scen or r.scenario in scen) and (not strat or r.strategy in strat)
             and (not stat or r.status in stat)]
    rows = []
    for r in shown:
        status = r.status
        if r.status == "running":
            status = f"running: {r.phase}, experience {(r.experience or 0) + 1}/{r.experiences}"
        elif r.status in ("failed", "corrupt"):
            status = f"{r.status}: {r.error}"
        rows.append({"run": r.label, "scenario": r.scenario, "strategy": r.strategy, "protocol": r.protocol,
                     "seed": r.seed, "final avg acc (%)": None if r.final_average_accuracy is None
                     else round(100 * r.final_average_accuracy, 2),
                     "forgetting (%)": None if r.average_forgetting is None else round(100 * r.average_forgetting, 2),
                     "memory bytes": r.memory_bytes, "wall s": None if r.wall_seconds is None
                     else round(r.wall_seconds), "status": status})
    st.dataframe(pd.DataFrame(rows), hide_index=True, width="stretch")
    labels = [r.label for r in shown if r.status == "finished"]
    picked = st.multiselect("compare runs", labels, default=labels[: min(6, len(labels))])
    return [r for r in shown if r.label in picked]


def memory_tab(runs: list[RunInfo]) -> None:
    finished = [r for r in runs if r.status == "finished" and r.metrics.get("memory")]
    if not finished:
        st.info("No finished run with a memory yet.")
        return
    scenario = st.selectbox("scenario", sorted({r.scenario for r in finished}), key="mem_scen")
    rows = []
    for r in [r for r in finished if r.scenario == scenario]:
        for rec in r.metrics["memory"]:
            path = Path(rec["file"]) if Path(rec["file"]).is_absolute() else r.path / rec["file"]
            if not path.exists():
                path = r.path / "memory" / Path(rec["file"]).name
            parts = budget_breakdown(*memory_header(path)) if path.exists() else {}
            rows.append({"strategy": r.strategy, "seed": r.seed, "experience": rec["experience"],
                         "kind": rec["kind"], "r": rec["rank"], "k": rec["groups"], "m": rec["per_group"],
                         "images stored": rec["images"], "bytes": rec["bytes"], "budget": rec["budget_bytes"],
                         "raw images in same bytes": round(rec["bytes"] / 3072, 1), **parts})
    df = pd.DataFrame(rows)
    st.dataframe(df, hide_index=True, width="stretch")
    parts = df.melt(id_vars=["strategy", "seed", "experience"], value_vars=["mappers", "bases", "labels", "images"],
                    var_name="component", value_name="component bytes")
    chart = alt.Chart(parts).mark_bar().encode(
        x=alt.X("experience:O"), y=alt.Y("sum(component bytes):Q", title="bytes"),
        color="component:N", column=alt.Column("strategy:N"))
    st.altair_chart(chart)


def samples_tab(runs: list[RunInfo]) -> None:
    from lss_cl.memory import load_memory

    with_memory = [r for r in runs if (r.path / "memory").is_dir() and any((r.path / "memory").glob("exp_*.safetensors"))]
    if not with_memory:
        st.info("No memory files yet.")
        return
    run = st.selectbox("run", with_memory, format_func=lambda r: r.label, key="sample_run")
    files = sorted((run.path / "memory").glob("exp_*.safetensors"))
    exp = st.slider("experience", 0, len(files) - 1, 0) if len(files) > 1 else 0
    mem = load_memory(files[exp])
    names = mem.meta.get("class_names", [])
    x = mem.images().float()
    if mem.kind == "raw":
        shown = x.permute(0, 3, 1, 2).float() / 255
    else:
        norm = display_normalizer(mem.meta["dataset"], bool(mem.meta.get("zca")))
        if norm is None:
            st.warning("dataset not found: showing images min-max scaled in normalised space")
            lo, hi = x.amin((1, 2, 3), keepdim=True), x.amax((1, 2, 3), keepdim=True)
            shown = (x - lo) / (hi - lo + 1e-8)
        else:
            shown = norm.inverse(x)
    labels = mem.labels()
    per_group = mem.meta.get("per_group") or len(x)
    group = st.slider("group", 0, max(int(mem.meta.get("groups") or 1) - 1, 0), 0) if mem.kind == "lowrank" else 0
    rows = range(group * per_group, min((group + 1) * per_group, len(x))) if mem.kind == "lowrank" else range(len(x))
    captions = []
    for i in rows:
        if labels.is_floating_point():
            p, idx = labels[i].topk(min(2, labels.shape[1]))
            captions.append(", ".join(f"{names[j] if j < len(names) else j} {v:.2f}" for v, j in zip(p.tolist(), idx.tolist())))
        else:
            captions.append(str(names[int(labels[i])] if names else int(labels[i])))
    st.subheader(f"experience {exp}: {mem.kind}, {mem.num_images} images, classes {', '.join(names)}")
    st.image(list(to_uint8(shown[list(rows)])), caption=captions, width=96)
    if mem.kind == "lowrank":
        t = mem.tensors
        st.subheader("dimension mappers U (H×r) and V (W×r), per channel")
        st.image([heat(t["U"][group, c]) for c in range(t["U"].shape[1])] +
                 [heat(t["V"][group, c]) for c in range(t["V"].shape[1])],
                 caption=[f"U c{c}" for c in range(t["U"].shape[1])] + [f"V c{c}" for c in range(t["V"].shape[1])])
        st.subheader("bases Σ (r×r) of the first images of the group")
        st.image([heat(t["S"][group, j, c]) for j in range(min(4, t["S"].shape[1])) for c in range(t["S"].shape[2])],
                 caption=[f"img {j} c{c}" for j in range(min(4, t["S"].shape[1])) for c in range(t["S"].shape[2])])
    real = display_normalizer(mem.meta["dataset"], False)
    if real is not None:
        from lss_cl.data import load_dataset

        data = load_dataset(mem.meta["dataset"])
        idx = np.concatenate([np.flatnonzero(data.train.labels == c)[:8] for c in mem.classes])
        st.subheader("real images of the same classes")
        st.image(list(data.train.images[idx].repeat(3, axis=1).repeat(3, axis=2)),
                 caption=[data.class_names[int(c)] for c in data.train.labels[idx]], width=96)


def accuracy_tab(runs: list[RunInfo], picked: list[RunInfo]) -> None:
    finished = [r for r in runs if r.status == "finished"]
    if not finished:
        st.info("No finished run yet.")
        return
    for r in picked or finished[:1]:
        m = np.array(r.metrics["accuracy_matrix"]) * 100
        df = pd.DataFrame([{"trained through": i, "test experience": j, "accuracy (%)": round(float(m[i, j]), 2)}
                           for i in range(m.shape[0]) for j in range(m.shape[1])])
        st.markdown(f"**{r.label}**: final average accuracy {100 * r.final_average_accuracy:.2f}%, "
                    f"forgetting {100 * (r.average_forgetting or 0):.2f}%")
        base = alt.Chart(df).encode(x="test experience:O", y="trained through:O")
        st.altair_chart(base.mark_rect().encode(color=alt.Color("accuracy (%):Q", scale=alt.Scale(domain=[0, 100])))
                        + base.mark_text().encode(text="accuracy (%):Q"))
        last = m[-1]
        forget = [max(m[:-1, j]) - last[j] for j in range(m.shape[1] - 1)] if m.shape[0] > 1 else []
        if forget:
            st.caption("forgetting per experience (%): best earlier accuracy − final accuracy")
            st.bar_chart(pd.DataFrame({"forgetting (%)": forget}, index=[f"exp {j}" for j in range(len(forget))]))
    scenario = st.selectbox("scenario for the average-accuracy curves", sorted({r.scenario for r in finished}))
    curves = defaultdict(list)
    for r in finished:
        if r.scenario == scenario:
            curves[(r.protocol, r.strategy)].append(r.metrics["average_accuracy"])
    rows = []
    for (proto, strat), lists in curves.items():
        for i in range(min(len(a) for a in lists)):
            vals = [100 * a[i] for a in lists]
            mean, std = statistics.fmean(vals), statistics.stdev(vals) if len(vals) > 1 else 0.0
            rows.append({"strategy": f"{proto}-{strat}", "experience": i, "mean": mean,
                         "low": mean - std, "high": mean + std, "seeds": len(vals)})
    df = pd.DataFrame(rows)
    band = alt.Chart(df).mark_area(opacity=0.2).encode(x="experience:O", y="low:Q", y2="high:Q", color="strategy:N")
    line = alt.Chart(df).mark_line(point=True).encode(x="experience:O", y=alt.Y("mean:Q", title="average accuracy (%)"),
                                                       color="strategy:N")
    st.altair_chart(band + line, width="stretch")


def main() -> None:
    st.title("lss-cl: distilled memories")
    root = st.sidebar.text_input("runs folder", os.environ.get("LSS_CL_RUNS", "runs"))
    runs = load_runs(root)
    st.sidebar.write(f"{len(runs)} runs found")
    if any(r.status == "running" for r in runs):
        st.sidebar.caption("live: refreshing from progress.json every 3 s")
    if not runs:
        st.warning(f"No runs under {root}. Start one with `lss-cl run scenarios/split_cifar10_quick.yaml`.")
        return
    tabs = st.tabs(["Runs", "Memory budgets", "Reconstructed samples", "Accuracy"])
    with tabs[0]:
        picked = live_runs_table(root)
    with tabs[1]:
        memory_tab(runs)
    with tabs[2]:
        samples_tab(runs)
    with tabs[3]:
        accuracy_tab(runs, picked)


def live_runs_table(root: str) -> list[RunInfo]:
    """The runs table; re-read every 3 s while any run is running (progress.json)."""
    runs = load_runs(root)
    if any(r.status == "running" for r in runs):
        @st.fragment(run_every=3)
        def refresh() -> None:
            runs_tab(load_runs(root))
        refresh()
        return [r for r in runs if r.status == "finished"][:6]
    return runs_tab(runs)


main()
