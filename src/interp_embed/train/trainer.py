"""Train a TopK or BatchTopK sparse autoencoder on a reader's activations (Gao et al. 2024), resumable after a kill.

The recipe: the architecture's own training activation, loss = FVU + alpha * AuxK, where AuxK reconstructs
the residual error from the ``k_aux`` largest pre-activations of the dead latents so they get gradient
again; decoder rows kept at unit norm (the gradient component parallel to each row is removed before the
step, the rows are renormalised after it); ``b_dec`` starts at the geometric median of the first buffer; Adam.

Checkpoints are a safetensors file (parameters, buffers such as BatchTopK's threshold, Adam moments,
dead-latent counters) plus ``state.json`` (step, stream position, configs), each written to a temporary
file, fsynced and renamed. The JSON is written last and names the weights file, so a kill at any moment
leaves either the old or the new checkpoint whole. Resuming restores everything the next step depends on,
so the final weights equal those of an uninterrupted run with the same seed (on the same device and
thread count).
"""
from __future__ import annotations

import json
import logging
import time
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from tqdm.auto import tqdm

from ..architectures import BatchTopKConfig, SparseAutoencoder, TopKConfig, build_sae, save_sae
from ..architectures.topk import top_k
from ..files import TRAINED_SAE, TRAINING_STATE, write_atomically
from ..labeling import label_sae
from ..reading.activations import tokenize
from ..reading.reader import Reader, default_device
from .config import HarvestConfig, TrainConfig
from .corpus import read_texts
from .harvest import ActivationStream, Position, fingerprint

logger = logging.getLogger(__name__)


def geometric_median(x: torch.Tensor, iters: int = 64) -> torch.Tensor:
    """Weiszfeld's algorithm: the point minimising the summed distances, robust to outlier tokens."""
    median = x.mean(0)
    for _ in range(iters):
        weights = 1.0 / (x - median).norm(dim=1).clamp_min(1e-8)
        median = (weights[:, None] * x).sum(0) / weights.sum()
    return median


class SAETrainer:
    """One TopK or BatchTopK SAE with its optimiser and dead-latent counters; ``step`` trains on one batch."""

    def __init__(self, cfg: TrainConfig, d_in: int, hook_layer: int, model_name: str, total_steps: int, device: str,
                 hook_site: str = "resid_post"):
        self.cfg, self.total_steps, self.device = cfg, total_steps, device
        shape = dict(d_in=d_in, d_sae=cfg.d_sae, hook_layer=hook_layer, hook_site=hook_site, k=cfg.k,
                     model_name=model_name, extra={"trainer": "interp_embed.train"})
        sae_cfg = (BatchTopKConfig(**shape, threshold_rate=cfg.batch_topk_threshold_rate) if cfg.batch_topk
                   else TopKConfig(**shape))
        self.sae = build_sae(sae_cfg)
        gen = torch.Generator().manual_seed(cfg.seed)
        w = torch.randn(cfg.d_sae, d_in, generator=gen)
        w /= w.norm(dim=1, keepdim=True)
        with torch.no_grad():
            self.sae.W_dec.copy_(w)
            self.sae.W_enc.copy_(w.T)  # encoder starts as the decoder's transpose (Gao et al.)
        self.sae.to(device)
        self.opt = torch.optim.Adam(self.sae.parameters(), lr=cfg.learning_rate(), betas=(0.9, 0.999), eps=6.25e-10)
        self.since_fired = torch.zeros(cfg.d_sae, dtype=torch.long, device=device)
        self.step_count = 0

    def init_b_dec(self, sample: torch.Tensor) -> None:
        sample = sample[:32_768].to(self.device, torch.float32)
        centre = geometric_median(sample) if self.cfg.b_dec_init == "geometric_median" else sample.mean(0)
        with torch.no_grad():
            self.sae.b_dec.copy_(centre)

    def lr_at(self, step: int) -> float:
        """Linear warm-up, constant, then linear decay to 0 over the last ``decay_fraction`` of steps."""
        base = self.cfg.learning_rate()
        warm = min(1.0, (step + 1) / max(1, self.cfg.warmup_steps))
        decay_start = int(self.total_steps * (1 - self.cfg.decay_fraction))
        if step >= decay_start and self.total_steps > decay_start:
            return base * warm * max(0.0, (self.total_steps - step) / (self.total_steps - decay_start))
        return base * warm

    def step(self, x: torch.Tensor) -> dict[str, float]:
        cfg, sae = self.cfg, self.sae
        x = x.to(self.device, torch.float32)
        pre = sae.pre_activations(x)
        acts = sae.training_activation(pre)
        residual = x - sae.decode(acts)
        total_variance = (x - x.mean(0)).pow(2).sum()
        fvu = residual.pow(2).sum() / total_variance
        loss = fvu
        dead = self.since_fired >= cfg.dead_tokens
        n_dead = int(dead.sum())
        auxk = torch.zeros((), device=self.device)
        if cfg.auxk_alpha > 0 and n_dead:
            aux_acts = top_k(pre.masked_fill(~dead, -torch.inf), min(cfg.k_aux, n_dead))
            # The dead latents learn to explain what the live ones missed (no bias: it is a residual).
            auxk = (aux_acts @ sae.W_dec - residual.detach()).pow(2).sum() / total_variance
            loss = loss + cfg.auxk_alpha * min(n_dead / cfg.k_aux, 1.0) * auxk
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        with torch.no_grad():
            w, g = sae.W_dec, sae.W_dec.grad
            g -= (g * w).sum(-1, keepdim=True) * w  # keep the step tangent to the unit sphere
            for group in self.opt.param_groups:
                group["lr"] = self.lr_at(self.step_count)
            self.opt.step()
            w /= w.norm(dim=-1, keepdim=True)
            fired = (acts > 0).any(0)
            self.since_fired += x.shape[0]
            self.since_fired[fired] = 0
        self.step_count += 1
        return {"fvu": float(fvu.detach()), "auxk": float(auxk.detach()), "dead_frac": n_dead / cfg.d_sae,
                "l0": float((acts > 0).sum(-1).float().mean()), "lr": self.opt.param_groups[0]["lr"]}

    # -- checkpoints ------------------------------------------------------------------------------
    def tensors(self) -> dict[str, torch.Tensor]:
        out = {"since_fired": self.since_fired.cpu()}
        for name, b in self.sae.named_buffers():
            out[f"buffer.{name}"] = b.detach().cpu()
        for name, p in self.sae.named_parameters():
            out[f"param.{name}"] = p.detach().cpu()
            for key, value in self.opt.state.get(p, {}).items():
                out[f"adam.{name}.{key}"] = value.detach().cpu().reshape(-1) if value.dim() == 0 else value.detach().cpu()
        return {k: v.contiguous() for k, v in out.items()}

    def load_tensors(self, tensors: dict[str, torch.Tensor], step: int) -> None:
        with torch.no_grad():
            for name, p in self.sae.named_parameters():
                p.copy_(tensors[f"param.{name}"])
                state = {key.rsplit(".", 1)[1]: t for key, t in tensors.items() if key.startswith(f"adam.{name}.")}
                if state:
                    state["step"] = state["step"].reshape(())  # Adam keeps its step count on the CPU
                    self.opt.state[p] = {k: (v if k == "step" else v.to(self.device)) for k, v in state.items()}
            for name, b in self.sae.named_buffers():
                b.copy_(tensors[f"buffer.{name}"])
        self.since_fired = tensors["since_fired"].to(self.device)
        self.step_count = step


def save_checkpoint(out_dir: Path, trainer: SAETrainer, position: Position, meta: dict, done: bool = False) -> None:
    weights = out_dir / f"checkpoint-{trainer.step_count:08d}.safetensors"
    write_atomically(weights, lambda tmp: save_file(trainer.tensors(), str(tmp)))
    state = {**meta, "format": 1, "step": trainer.step_count, "done": done, "weights": weights.name,
             "position": [position.epoch, position.buffer, position.batch]}
    write_atomically(out_dir / TRAINING_STATE, json.dumps(state, indent=1))
    for old in out_dir.glob("checkpoint-*.safetensors"):  # only after the JSON names the new one
        if old.name != weights.name:
            old.unlink()


def train_sae(
    out_dir: str | Path,
    harvest_cfg: HarvestConfig,
    train_cfg: TrainConfig,
    texts: list[str] | None = None,
    *,
    docs: list[np.ndarray] | None = None,
    reader: Reader | None = None,
    resume: bool = True,
    progress: bool = True,
) -> SparseAutoencoder:
    """Train an SAE on ``texts`` (or pre-tokenised ``docs``: each document's token ids, no template), save it to
    ``out_dir/sae`` and return it as saved. Documents are read in windows of ``harvest_cfg.max_doc_tokens``.

    A TopK SAE is saved as it trained; a BatchTopK SAE as the JumpReLU SAE it computes at inference.

    With ``resume=True`` an interrupted run in ``out_dir`` continues from its last checkpoint; a
    finished one is returned as it is. ``out_dir/state.json`` holds the training curve under ``log``.

    >>> sae = train_sae("runs/my-sae", HarvestConfig(layer=15), TrainConfig(d_sae=4096, k=32), texts)  # doctest: +SKIP
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    device = train_cfg.device or default_device()
    reader = reader or Reader(harvest_cfg.reader)
    if docs is None:
        if texts is None:
            raise ValueError("train_sae needs texts or docs")
        docs = tokenize(reader, texts)
    if not any(len(d) for d in docs):
        raise ValueError("the corpus is empty: no document has a token")
    stream = ActivationStream(reader, docs, harvest_cfg, train_cfg.seed, device)
    per_epoch = [stream.batches_per_buffer(e, train_cfg.batch_size) for e in range(train_cfg.epochs)]
    total_steps = sum(sum(b) for b in per_epoch)
    trainer = SAETrainer(train_cfg, reader.width, harvest_cfg.layer, harvest_cfg.model, total_steps, device,
                         hook_site=harvest_cfg.site)
    meta = {"harvest": harvest_cfg.to_json(), "train": train_cfg.to_json(),
            "corpus": fingerprint([w.ids for w in stream.windows]),
            "corpus_tokens": int(stream.lengths.sum()), "total_steps": total_steps, "log": []}

    start, state_path = Position(), out_dir / TRAINING_STATE
    if resume and state_path.is_file():
        state = json.loads(state_path.read_text())
        for key in ("harvest", "train", "corpus"):
            if state[key] != meta[key]:
                raise ValueError(f"{state_path}: {key} differs from this run's; use another out_dir or resume=False")
        trainer.load_tensors(load_file(str(out_dir / state["weights"])), state["step"])
        meta["log"], start = state["log"], Position(*state["position"])
        logger.info("Resuming %s at step %d of %d", out_dir, trainer.step_count, total_steps)
    else:
        first = stream.buffers(0)[0]
        trainer.init_b_dec(stream.harvest(first))

    tokens_done = int(sum(stream.lengths[b].sum() for e in range(start.epoch) for b in stream.buffers(e)))
    if start.epoch < train_cfg.epochs:  # batches of the current epoch already trained
        done_here = sum(per_epoch[start.epoch][: start.buffer]) + start.batch
        tokens_done += min(done_here * train_cfg.batch_size, int(stream.lengths.sum()))
    bar = tqdm(total=int(stream.lengths.sum()) * train_cfg.epochs, initial=tokens_done, unit="tok",
               unit_scale=True, disable=not progress, desc="train SAE")
    position, started = start, time.perf_counter()
    for position, batch in stream.iterate(train_cfg.batch_size, train_cfg.epochs, start):
        metrics = trainer.step(batch)
        bar.update(batch.shape[0])
        step = trainer.step_count
        if step % train_cfg.log_every == 0 or step == total_steps:
            meta["log"].append({"step": step, **{k: round(v, 6) for k, v in metrics.items()}})
            bar.set_postfix(fvu=f"{metrics['fvu']:.3f}", dead=f"{metrics['dead_frac']:.1%}", l0=f"{metrics['l0']:.0f}")
        if not np.isfinite(metrics["fvu"]):
            raise FloatingPointError(f"loss became {metrics['fvu']} at step {step}; lower the learning rate")
        if train_cfg.checkpoint_every and step % train_cfg.checkpoint_every == 0 and step < total_steps:
            nxt = Position(position.epoch, position.buffer, position.batch + 1)
            save_checkpoint(out_dir, trainer, nxt, meta)
    bar.close()
    meta["seconds_this_run"] = round(time.perf_counter() - started, 1)
    save_checkpoint(out_dir, trainer, Position(train_cfg.epochs, 0, 0), meta, done=True)
    save_sae(trainer.sae, out_dir / TRAINED_SAE)
    return trainer.sae.inference_form().eval()


def train_from_file(corpus: str | Path, out_dir: str | Path, harvest_cfg: HarvestConfig, train_cfg: TrainConfig,
                    field: str = "text", split: str | None = None, resume: bool = True,
                    label_tokens: int = 500_000) -> Path:
    """What ``interp-embed train-sae`` runs: read a corpus file, train, label the features offline from
    ``label_tokens`` tokens of the corpus (0: no labels), and return the SAE folder."""
    texts = read_texts(corpus, field=field, split=split)
    logger.info("Training on %d documents from %s", len(texts), corpus)
    train_sae(out_dir, harvest_cfg, train_cfg, texts, resume=resume)
    folder = Path(out_dir) / TRAINED_SAE
    if label_tokens:
        label_sae(folder, texts, model=harvest_cfg.model, role=harvest_cfg.role, device=train_cfg.device,
                  max_tokens=label_tokens, max_doc_tokens=harvest_cfg.max_doc_tokens)
    return folder
