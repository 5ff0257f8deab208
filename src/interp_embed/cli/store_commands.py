"""Commands that make and read stores: demo, encode, info, top."""
from __future__ import annotations

import enum
import functools
import shlex
import time
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pandas as pd
import typer

from . import app
from .common import (CSV, JSON, console, errors, fail, friendly, open_dataset, plain, read_table, resume_command,
                     shorten, show)
from .config import config_options
from ..analysis import diff_features
from ..analysis.diff import canonical_diff
from ..spec.plan import EncodePlan
from ..store.placing import holds_store

SAE_HELP = ("default (the bundled SAE) | PATH (a folder in SAELens' layout) | saelens:RELEASE/SAE_ID | "
            "goodfire:VARIANT")


class Engine(str, enum.Enum):
    """Where the documents are encoded."""

    local = "local"
    ray = "ray"


class Arithmetic(str, enum.Enum):
    """The reader's arithmetic (see ``interp_embed.reading.arithmetic``)."""

    auto = "auto"
    float32 = "float32"
    bfloat16 = "bfloat16"


class OnError(str, enum.Enum):
    """What to do with rows whose text cannot be encoded (missing, empty, not text)."""

    raise_ = "raise"
    skip = "skip"


def sae_of_option(spec: str, device: str | None, dtype: str):
    """The SAE a ``--sae`` value names, its reader on ``device`` in ``dtype``."""
    from ..saes import DefaultSAE, GoodfireSAE, LocalSAE

    if spec == "default":
        return DefaultSAE(device=device, dtype=dtype)
    if spec.startswith("saelens:"):
        release, _, sae_id = spec[len("saelens:"):].partition("/")
        if not release or not sae_id:
            raise typer.BadParameter(f"{spec!r}: write saelens:RELEASE/SAE_ID, e.g. saelens:gpt2-small-res-jb/"
                                     "blocks.8.hook_resid_pre", param_hint="--sae")
        return LocalSAE(release=release, sae_id=sae_id, device=device, dtype=dtype)
    if spec.startswith("goodfire:"):
        return GoodfireSAE(variant_name=spec[len("goodfire:"):], device=device, dtype=dtype)
    if not Path(spec).is_dir():
        raise typer.BadParameter(f"{spec!r} is neither 'default', saelens:..., goodfire:... nor a folder",
                                 param_hint="--sae")
    return LocalSAE(path=spec, device=device, dtype=dtype)


def _typed(ctx: typer.Context, name: str) -> bool:
    """Whether the option ``name`` was given on the command line (not left at its default)."""
    source = ctx.get_parameter_source(name)
    return source is not None and source.name == "COMMANDLINE"


DEMO_STORE = Path("demo.iembed")


@app.command()
@friendly
def demo(save_path: Path = typer.Option(DEMO_STORE, help="Where to keep the store; a second run reuses it."),
         features_per_group: int = typer.Option(2, min=1, help="Features shown per language.")) -> None:
    """Embed the bundled sample with the default SAE and show, per language, its most distinctive features."""
    from ..data import demo_sample

    df = demo_sample()
    again = "interp-embed demo" + ("" if save_path == DEMO_STORE else f" --save-path {shlex.quote(str(save_path))}")
    with _stops_said(lambda path: again):
        ds = _demo_dataset(df, save_path)
    sources = ds.label_sources().set_index("feature_id").source
    origin = {"shipped": "shipped with the SAE, from its training text", "dataset": "from this dataset's words",
              "llm": "written by a language model", "user": "yours"}
    for language in sorted(df["language"].unique()):
        inside = (df["language"] == language).to_numpy()
        table = canonical_diff(diff_features(ds[inside], ds[~inside]))
        typer.echo()
        typer.secho(plain(f"Features most specific to language={language!r}"), bold=True)
        for row in table.head(features_per_group).itertuples():
            typer.echo(plain(f"  feature {row.feature_id} fires here on: {row.fires_on}"))
            typer.echo(plain(f"    label ({origin[sources.get(row.feature_id, 'shipped')]}): {row.label or '(none)'}"))
            typer.echo(plain(f"    active in {row.freq_a:.0%} of {language} documents, {row.freq_b:.0%} of the "
                             "others"))
            for text in ds[inside].top_documents_for_feature(int(row.feature_id), k=2):
                typer.echo(plain(f"    · {shorten(text)}"))


def _demo_dataset(df, save_path: Path):
    """The demo's store at ``save_path``, encoded on the first run and reused (finished if interrupted) after:
    the README's analyses load it from there, and a second run should not spend a minute encoding again. Says
    which of the three it did."""
    from .. import Dataset
    from ..store import Store

    if not save_path.exists():
        ds = Dataset(df, field="text", save_path=save_path)
    else:
        store = Store.open(save_path)
        if store.texts(0, store.n_documents) != df["text"].tolist():
            fail(f"{save_path} holds another table than the demo's; remove it or choose --save-path")
        if store.is_complete():
            typer.echo(plain(f"Reusing {save_path} (encoded by an earlier run; delete it to encode again)."))
            return Dataset.load_from_file(save_path)
        typer.echo(plain(f"Finishing {save_path} (an earlier run was interrupted)."))
        ds = Dataset.load_from_file(save_path, resume=True)
    typer.echo()
    typer.echo(plain(f"Encoded {len(ds)} documents into {save_path} ({ds.d_sae} features)."))
    return ds


@app.command()
@friendly
@config_options(exclude=("chunk_chars",), plan=EncodePlan)
def encode(ctx: typer.Context,
           input: Path = typer.Argument(None, help="A .csv, .tsv, .json, .jsonl, .parquet or .txt file (documents "
                                                   "separated by blank lines). Not needed with --resume."),
           out: Path = typer.Option(..., help="The store folder to write (or, with --resume, to finish)."),
           field: str = typer.Option("text", help="The column holding the text."),
           on_error: OnError = typer.Option(OnError.raise_, help="'raise': stop at rows whose text is missing or "
                                                                  "empty; 'skip': keep them without activations."),
           sae: str = typer.Option("default", help=SAE_HELP),
           device: str = typer.Option(None, help="cpu, cuda, cuda:1, mps (default: the best available)."),
           dtype: Arithmetic = typer.Option(Arithmetic.auto, help="The reader's arithmetic. 'auto': bfloat16 on a GPU, "
                                                                  "float32 on a CPU (with --resume: the store's); "
                                                                  "bfloat16 is faster on a CPU that has it."),
           resume: bool = typer.Option(False, help="Finish an interrupted run in OUT with its own table and settings."),
           overwrite: bool = typer.Option(False, help="Replace the store at OUT, whole, once the new one is complete "
                                                      "(never anything that is not a store)."),
           engine: Engine = typer.Option(Engine.local, help="'local': encode in this process; 'ray': on Ray workers "
                                                            "(pip install 'interp_embed[ray]')."),
           workers: int = typer.Option(None, min=1, help="Ray workers encoding at once (with --engine ray; default: "
                                                          "one per GPU of the cluster)."),
           address: str = typer.Option(None, help="The Ray cluster to join, e.g. auto or 10.0.0.5:6379 (with --engine "
                                                  "ray; default: start Ray on this machine for the run)."),
           plan: EncodePlan = EncodePlan()) -> None:
    """Encode a table of documents into a store, committed chunk by chunk (Ctrl-C keeps what is done)."""
    from .. import Dataset

    from ..store import Store

    started = time.perf_counter()
    where = {"engine": engine.value, "num_workers": workers, "ray_address": address}
    if resume:
        given = [f"--{name.replace('_', '-')}" for name in ("field", "on_error", "overwrite",
                                                             *EncodePlan.__dataclass_fields__) if _typed(ctx, name)]
        if given:
            raise typer.BadParameter(f"with --resume the store's own table and settings are used; drop {', '.join(given)}")
        store = Store.open(out)  # fails here, before any model loads, if OUT is not a store
        if input is not None and not _same_texts(read_table(input, store.field), store):
            fail(f"{input} is not the table {out} was made from; resume with `{resume_command(out)}` alone")
        from ..saes import DefaultSAE

        source = store.encoder.source
        if not _typed(ctx, "sae") and source is not None and source.get("type") != DefaultSAE.kind and \
                not store.is_complete():
            fail(f"{out} was encoded with {store.encoder.summary()}; only the bundled default SAE is rebuilt from a "
                 f"store's record, so pass the SAE that encoded it: `{resume_command(out)} --sae PATH` "
                 "(or saelens:RELEASE/SAE_ID, goodfire:VARIANT)")
        chosen = any(_typed(ctx, name) for name in ("sae", "device", "dtype"))
        encoder = sae_of_option(sae, device, dtype.value) if chosen else None
        run = functools.partial(Dataset.load_from_file, out, resume=True, sae=encoder, **where)
    else:
        if input is None:
            raise typer.BadParameter("give the INPUT table to encode (or --resume to finish OUT)", param_hint="INPUT")
        if not input.is_file():
            raise typer.BadParameter(f"{plain(input)} is not a file", param_hint="INPUT")
        _refuse_taken(out, overwrite)
        table = read_table(input, field)
        encoder = sae_of_option(sae, device, dtype.value)
        run = functools.partial(Dataset, table, sae=encoder, field=field, save_path=out, on_error=on_error.value,
                                plan=plan, overwrite=overwrite, **where)
    with _stops_said(resume_command):
        ds = run()
    _summary(ds, out, time.perf_counter() - started)


@contextmanager
def _stops_said(resume_call):
    """Within the block, an encoding that stops says once, on stderr, what is kept and the command that resumes it
    (``resume_call(store path)``); after Ctrl-C that is all that is said (exit code 130)."""
    from ..encode.session import stop_report

    said = []

    def say(message: str) -> None:
        errors.print(plain(message), markup=False)
        said.append(message)

    try:
        with stop_report(resume_call, say):
            yield
    except KeyboardInterrupt:
        if said:
            raise typer.Exit(130) from None
        raise


def _refuse_taken(out: Path, overwrite: bool) -> None:
    """Fail before any work when OUT holds what encoding there would not replace, saying the ways out: only an
    unfinished store is told to resume, a complete one to be used, anything else to choose another --out."""
    from ..store import Store
    from ..store.placing import check_target

    if not overwrite and holds_store(out):
        try:
            store = Store.open(out)
            encoded, rows, complete = sum(c.n_encoded for c in store.manifest.chunks), store.n_documents, \
                store.is_complete()
        except Exception:  # noqa: BLE001 — a damaged store is still one not to write over
            fail(f"{out} already holds a store that cannot be read; replace it with --overwrite, or choose another "
                 "--out")
        if complete:
            fail(f"{out} already holds a complete store ({encoded} of {rows} rows encoded): use it "
                 f"(interp-embed info {shlex.quote(str(out))}), replace it with --overwrite, or choose another --out")
        fail(f"{out} holds an unfinished store ({encoded} of {rows} rows encoded). Continue it with "
             f"`{resume_command(out)}`, replace it with --overwrite, or choose another --out")
    try:
        check_target(out, overwrite)
    except FileExistsError as taken:
        fail(getattr(taken, "command_line", str(taken)))


def _same_texts(table, store) -> bool:
    """Whether ``table`` (as :func:`read_table` gives it) holds the texts of ``store``, compared a batch of rows
    at a time when it comes in batches."""
    if store.field not in (table.columns if isinstance(table, pd.DataFrame) else table.schema.names):
        return False
    batches = [table] if isinstance(table, pd.DataFrame) else table
    row = 0
    for batch in batches:
        texts = batch[store.field].tolist() if isinstance(batch, pd.DataFrame) else batch.column(store.field).to_pylist()
        if texts != store.texts(row, row + len(texts)):
            return False
        row += len(texts)
    return row == store.n_documents


def _summary(ds, out: Path, seconds: float) -> None:
    store = ds.stored
    chunks = store.manifest.chunks
    encoded = sum(c.n_encoded for c in chunks)
    tokens = sum(c.n_tokens for c in chunks)
    console.print(f"Encoded {encoded} of {len(ds)} rows ({tokens:,} tokens, {len(store.skipped)} skipped) in "
                  f"{seconds:.0f} s into {out}")
    out = shlex.quote(str(out))
    console.print(f"Next: interp-embed info {out}  ·  interp-embed top {out} --feature F  ·  "
                  f"interp-embed report {out} -o report.html")


@app.command()
@friendly
def info(path: Path = typer.Argument(..., help="A store folder.")) -> None:
    """Summarise a store: rows, encoded rows, tokens, bytes per stored token, encoder, labels."""
    from ..store import Store
    from ..store.reading import mode_sizes

    store = Store.open(path)
    chunks = store.manifest.chunks
    tokens = sum(c.n_tokens for c in chunks)
    size = sum(c.bytes for c in chunks)
    reader = store.encoder.reader
    pending = store.pending_rows().size
    console.print(f"{path}: {store.n_documents} rows, {sum(c.n_encoded for c in chunks)} encoded, "
                  f"{len(store.skipped)} skipped, {pending} pending")
    if pending:
        console.print(f"  finish with: {resume_command(path)}")
    console.print(f"{tokens} tokens in {len(chunks)} chunks, {size / max(tokens, 1):.1f} bytes per token")
    if tokens:
        full, compact = mode_sizes(store)
        kept = "token-level (highlights read from disk)" if store.plan.token_level else \
            "compact (pooled activations only; highlights recomputed per document)"
        console.print(f"  mode: {kept}; token-level {full / tokens:.1f} bytes per token"
                      f"{'' if store.plan.token_level else ' (estimated)'}, compact {compact / tokens:.1f}")
    encoded_by = f"reader {reader.model} layer {reader.layer} ({reader.role}, {reader.dtype}); " if reader else ""
    console.print(f"{encoded_by}SAE {store.encoder.sae.get('architecture', '?')} with {store.d_sae} features")
    written = store.label_records()
    console.print(f"labels: {len(store.shipped_labels())} shipped with the SAE, {len(written)} written since "
                  f"({sum(r.source == 'llm' for r in written)} by a language model)")


@app.command()
@friendly
def top(path: Path = typer.Argument(..., help="A store folder."),
        feature: int = typer.Option(..., min=0, help="Feature id."),
        k: int = typer.Option(5, min=1, help="Documents shown."),
        csv: Path = CSV, json: Path = JSON) -> None:
    """The documents where a feature is strongest, with their rows, activations and marked tokens."""
    ds = open_dataset(path)
    if feature >= ds.d_sae:
        fail(f"feature {feature} does not exist: the SAE of {path} ({ds.encoder.sae.get('architecture', '?')}) has "
             f"{ds.d_sae} features, 0 to {ds.d_sae - 1}")
    column = ds.latents("max")[:, feature].toarray().ravel()
    order = [int(i) for i in np.argsort(-column, kind="stable")[:k] if column[i] > 0]
    table = pd.DataFrame({"row": order, "activation": column[order],
                          "document": [ds[i].token_activations(feature) for i in order]})
    fired = ds.feature_words().fires_on(feature, 8) if ds.token_level else []
    console.print(f"feature {feature} fires here on: {', '.join(fired) or '(no words: see label)'}")
    console.print(f"  label: {ds.feature_labels().get(feature, '(no label)')}")
    if not order:
        console.print(f"feature {feature} is active in no document of {path}")
    show(table, ["row", "activation", "document"], k, f"top documents of feature {feature}", csv, json)
