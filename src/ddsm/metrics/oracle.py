"""Oracle: a small CNN classifier trained on real labelled sequences, used to check designs.

An oracle answers "does this designed sequence look like its target class?": the fraction of designs
it assigns to the class they were designed for. It is trained once on the real training data of a
labelled set (``bench/train_oracles.py``) and shipped as a checkpoint folder::

    model.safetensors   weights (float32)
    config.json         {"format_version", "kind": "ddsm-oracle", "ddsm_version", "name",
                         "model": {"name", "options"}, "classes", "label_key", "alphabet",
                         "seq_len", "rc_average", "metrics", "train", "data", "created"}

like :mod:`ddsm.checkpoint`: safetensors and JSON, never a pickle. Bundled oracles live in
``ddsm/resources/oracles/<name>/``; :func:`load_oracle` takes a bundled name or a folder.
"""

from __future__ import annotations

import datetime as _dt
import json
import logging
import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional, Sequence, Union

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..errors import DDSMInputError
from ..seeding import seeded_global_rng
from ._encode import index_matrix

logger = logging.getLogger(__name__)

FORMAT_VERSION = 1
KIND = "ddsm-oracle"
CONFIG_FILE = "config.json"
MODEL_FILE = "model.safetensors"
_BUNDLED = "oracles"


# ----------------------------------------------------------------------------------------- network
class OracleCNN(nn.Module):
    """``x (B, L) ids in [-1, K) -> logits (B, n_classes)``; ``-1`` (unknown / padding) is all-zero.

    Three conv stages (conv, max-pooling after the first two, BatchNorm, ReLU), then global max
    and mean pooling, a hidden layer with dropout and the class logits. Works for any ``L`` >= 1.
    """

    def __init__(
        self,
        n_classes: int,
        *,
        K: int = 4,
        channels: int = 128,
        kernel_size: int = 15,
        pools: Sequence[int] = (4, 4),
        dropout: float = 0.2,
    ) -> None:
        super().__init__()
        self.n_classes, self.K, self.channels = n_classes, K, channels
        self.kernel_size, self.pools, self.dropout = kernel_size, tuple(pools), dropout
        kernels = [kernel_size, 7, 5]
        ins = [K, channels, channels]
        self.convs = nn.ModuleList(nn.Conv1d(i, channels, k, padding="same") for i, k in zip(ins, kernels))
        self.norms = nn.ModuleList(nn.BatchNorm1d(channels) for _ in kernels)
        self.drop = nn.Dropout(dropout)
        self.hidden = nn.Linear(2 * channels, channels)
        self.out = nn.Linear(channels, n_classes)

    def options(self) -> dict[str, Any]:
        """Constructor keyword arguments (the model part of the checkpoint config)."""
        return {"n_classes": self.n_classes, "K": self.K, "channels": self.channels,
                "kernel_size": self.kernel_size, "pools": list(self.pools), "dropout": self.dropout}

    def forward(self, x: Tensor) -> Tensor:
        h = F.one_hot(x.clamp(min=0).long(), self.K).float() * (x >= 0).unsqueeze(-1).float()
        return self.forward_onehot(h)

    def forward_onehot(self, h: Tensor) -> Tensor:
        """``h (B, L, K)`` one-hot rows, probability rows or zero rows (padding) -> logits
        ``(B, n_classes)``; differentiable in ``h`` (classifier guidance)."""
        h = h.transpose(1, 2)  # (B, K, L)
        for i, (conv, norm) in enumerate(zip(self.convs, self.norms)):
            h = conv(h)
            # Pooling before the normalisation keeps the per-position work at full length to the
            # convolution alone (the CPU cost that matters for training on a laptop).
            if i < len(self.pools) and h.shape[-1] >= self.pools[i]:
                h = F.max_pool1d(h, self.pools[i])
            h = F.relu(norm(h))
        h = torch.cat([h.amax(-1), h.mean(-1)], dim=1)
        return self.out(self.drop(F.relu(self.hidden(h))))


def _reverse_complement(x: Tensor) -> Tensor:
    """ids for ACGT -> ids of the reverse complement (A<->T = 0<->3, C<->G = 1<->2); -1 stays."""
    return torch.where(x >= 0, 3 - x, x).flip(-1)


# ------------------------------------------------------------------------------------------ oracle
@dataclass
class Oracle:
    """A trained classifier with the facts needed to apply it.

    Attributes:
        model: the network (in eval mode).
        classes: class names, index = logit index.
        label_key: the FASTA header key it was trained on (e.g. ``cell_type``).
        alphabet: letters in id order (``ACGT``).
        seq_len: training length; inputs are centre-cropped or padded to it.
        rc_average: average the logits of a sequence and its reverse complement (strand-free data).
        info: the rest of config.json (metrics, training settings, data provenance).
    """

    model: OracleCNN
    classes: list[str]
    label_key: str
    alphabet: str = "ACGT"
    seq_len: int = 200
    rc_average: bool = True
    name: str = "oracle"
    info: dict[str, Any] = field(default_factory=dict)

    def encode(self, seqs: Sequence[str]) -> Tensor:
        """``N`` strings -> ``(N, seq_len)`` ids, centre-cropped / right-padded with ``-1``."""
        L = self.seq_len
        fitted = []
        for s in seqs:
            if len(s) > L:
                start = (len(s) - L) // 2
                s = s[start : start + L]
            fitted.append(s)
        return torch.from_numpy(index_matrix(fitted, self.alphabet, L).astype(np.int64))

    @torch.no_grad()
    def logits(self, seqs: Sequence[str], *, batch_size: int = 512) -> np.ndarray:
        """``(N, n_classes)`` logits (CPU or the model's device; returned as numpy)."""
        self.model.eval()
        device = next(self.model.parameters()).device
        x = self.encode(seqs)
        out = []
        for start in range(0, len(x), batch_size):
            xb = x[start : start + batch_size].to(device)
            z = self.model(xb)
            if self.rc_average:
                z = 0.5 * (z + self.model(_reverse_complement(xb)))
            out.append(z.float().cpu())
        if not out:
            return np.zeros((0, len(self.classes)), dtype=np.float32)
        return torch.cat(out).numpy()

    def soft_logits(self, x: Tensor) -> Tensor:
        """Logits ``(B, n_classes)`` of probability rows ``x (B, L, K)`` (letters in ``alphabet``
        order), differentiable in ``x``: the same centre crop / right zero-padding to ``seq_len``
        and reverse-complement averaging as :meth:`logits`. On one-hot rows it equals
        :meth:`logits`."""
        L = self.seq_len
        if x.shape[1] > L:
            start = (x.shape[1] - L) // 2
            x = x[:, start : start + L]
        elif x.shape[1] < L:
            x = F.pad(x, (0, 0, 0, L - x.shape[1]))
        x = x.to(next(self.model.parameters()).dtype)
        z = self.model.forward_onehot(x)
        if self.rc_average:
            # reverse complement of ACGT rows: reverse the positions and the letters (A<->T, C<->G)
            z = 0.5 * (z + self.model.forward_onehot(x.flip(1).flip(2)))
        return z

    def predict_proba(self, seqs: Sequence[str], *, batch_size: int = 512) -> np.ndarray:
        """``(N, n_classes)`` class probabilities."""
        z = torch.from_numpy(self.logits(seqs, batch_size=batch_size))
        return torch.softmax(z, dim=-1).numpy()

    def predict(self, seqs: Sequence[str], *, batch_size: int = 512) -> list[str]:
        """The most likely class name of each sequence."""
        z = self.logits(seqs, batch_size=batch_size)
        return [self.classes[i] for i in z.argmax(-1)] if len(z) else []

    def accuracy(self, seqs: Sequence[str], labels: Sequence[str]) -> float:
        """Fraction of ``seqs`` predicted as their ``labels``."""
        if len(seqs) == 0:
            return float("nan")
        return float(np.mean([p == y for p, y in zip(self.predict(seqs), labels)]))

    def config(self) -> dict[str, Any]:
        """The JSON config saved beside the weights."""
        from ..checkpoint import ddsm_version

        return {"format_version": FORMAT_VERSION, "kind": KIND, "ddsm_version": ddsm_version(),
                "name": self.name, "model": {"name": "oracle_cnn", "options": self.model.options()},
                "classes": list(self.classes), "label_key": self.label_key, "alphabet": self.alphabet,
                "seq_len": self.seq_len, "rc_average": self.rc_average, **self.info,
                "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")}

    def save(self, folder: Union[str, Path]) -> Path:
        """Write ``model.safetensors`` then ``config.json`` (written last: its presence = complete)."""
        from safetensors.torch import save_file

        from ..data.io import atomic_write_text

        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        (folder / CONFIG_FILE).unlink(missing_ok=True)
        state = {k: v.detach().cpu().contiguous().clone() for k, v in self.model.state_dict().items()}
        tmp = folder / (MODEL_FILE + ".tmp")
        save_file(state, str(tmp), metadata={"format": "pt", "kind": KIND})
        os.chmod(tmp, 0o644)  # safetensors creates the file private; weights are not secret
        tmp.replace(folder / MODEL_FILE)
        atomic_write_text(folder / CONFIG_FILE, json.dumps(self.config(), indent=1) + "\n", force=True)
        return folder

    @classmethod
    def load(cls, folder: Union[str, Path], *, device: Optional[torch.device] = None) -> Oracle:
        """Read an oracle folder written by :meth:`save`.

        Raises:
            DDSMInputError: missing files, a config of another kind or version, mismatched weights.
        """
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        folder = Path(folder)
        cfg_path = folder / CONFIG_FILE
        if not cfg_path.is_file():
            raise DDSMInputError(f"oracle folder {folder} has no {CONFIG_FILE}")
        try:
            cfg = json.loads(cfg_path.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise DDSMInputError(f"{cfg_path} is not valid JSON: {e}") from None
        if not isinstance(cfg, dict) or cfg.get("kind") != KIND:
            raise DDSMInputError(f"{folder} is not a ddsm oracle (config kind {cfg.get('kind')!r})")
        if cfg.get("format_version", 0) > FORMAT_VERSION:
            raise DDSMInputError(f"{folder}: oracle format {cfg['format_version']} is newer than this ddsm reads")
        try:
            model = OracleCNN(**cfg["model"]["options"])
            state = load_file(str(folder / MODEL_FILE))
            model.load_state_dict(state)
        except (KeyError, TypeError) as e:
            raise DDSMInputError(f"{folder}: bad oracle config ({e})") from None
        except (SafetensorError, OSError, RuntimeError) as e:
            raise DDSMInputError(f"{folder}: cannot load oracle weights ({' '.join(str(e).split())[:200]})") from None
        if device is not None:
            model = model.to(device)
        model.eval()
        reserved = {"format_version", "kind", "ddsm_version", "name", "model", "classes", "label_key",
                    "alphabet", "seq_len", "rc_average", "created"}
        return cls(model=model, classes=list(cfg["classes"]), label_key=cfg.get("label_key", ""),
                   alphabet=cfg.get("alphabet", "ACGT"), seq_len=int(cfg["seq_len"]),
                   rc_average=bool(cfg.get("rc_average", False)), name=cfg.get("name", folder.name),
                   info={k: v for k, v in cfg.items() if k not in reserved})


# ---------------------------------------------------------------------------------------- bundled
def _bundled_root() -> Path:
    import importlib.resources

    return Path(str(importlib.resources.files("ddsm").joinpath("resources", _BUNDLED)))


def bundled_oracles() -> dict[str, Path]:
    """Name -> folder of every bundled oracle (folders holding a config.json), sorted by name."""
    root = _bundled_root()
    if not root.is_dir():
        return {}
    return {p.name: p for p in sorted(root.iterdir()) if (p / CONFIG_FILE).is_file()}


def load_eval_oracle(name: str, *, device: Optional[torch.device] = None) -> Optional[Oracle]:
    """The independent evaluation oracle bundled for the data set of oracle ``name`` (folder
    ``resources/oracles/eval/<name>``: another architecture, seed and train/valid split, trained
    by ``bench/train_oracles.py --eval``), or None. It judges designs and never steers them."""
    folder = _bundled_root() / "eval" / name
    return Oracle.load(folder, device=device) if (folder / CONFIG_FILE).is_file() else None


def load_oracle(name_or_path: Union[str, Path], *, device: Optional[torch.device] = None) -> Oracle:
    """A bundled oracle by name (``dhs4``, ``epd_promoters``) or an oracle folder by path."""
    bundled = bundled_oracles()
    if isinstance(name_or_path, str) and name_or_path in bundled:
        return Oracle.load(bundled[name_or_path], device=device)
    path = Path(name_or_path)
    if path.is_dir():
        return Oracle.load(path, device=device)
    raise DDSMInputError(
        f"no oracle {str(name_or_path)!r}: not a bundled name ({', '.join(bundled) or 'none'}) nor a folder"
    )


def match_oracle(classes: Sequence[str]) -> Optional[str]:
    """The bundled oracle whose classes include every name in ``classes`` (the smallest such), or None."""
    wanted = set(classes)
    if not wanted:
        return None
    best: Optional[tuple[int, str]] = None
    for name, folder in bundled_oracles().items():
        try:
            cfg = json.loads((folder / CONFIG_FILE).read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError):
            continue
        have = set(cfg.get("classes", []))
        if wanted <= have and (best is None or len(have) < best[0]):
            best = (len(have), name)
    return best[1] if best else None


# --------------------------------------------------------------------------------------- training
@dataclass
class OracleTrainConfig:
    """Training settings (saved in config.json under ``train``)."""

    epochs: int = 20
    batch_size: int = 128
    lr: float = 2e-3
    weight_decay: float = 1e-2
    max_seconds: float = 0.0  # 0 = no time budget
    patience: int = 4  # epochs without a better validation accuracy before stopping
    rc_augment: bool = True  # reverse-complement training examples at random (strand-free data)
    seed: int = 0


def train_oracle(
    train_seqs: Sequence[str],
    train_labels: Sequence[str],
    valid_seqs: Sequence[str],
    valid_labels: Sequence[str],
    *,
    label_key: str,
    name: str = "oracle",
    classes: Optional[Sequence[str]] = None,
    seq_len: Optional[int] = None,
    model_options: Optional[dict[str, Any]] = None,
    config: Optional[OracleTrainConfig] = None,
    on_epoch: Optional[Callable[[int, dict[str, float]], None]] = None,
) -> Oracle:
    """Train an :class:`OracleCNN` classifier; keeps the weights of the best validation epoch.

    Args:
        train_seqs, train_labels: training sequences (ACGT) and their class names.
        valid_seqs, valid_labels: held-out sequences for model selection and the reported accuracy.
        label_key: the header key the labels came from (recorded for users of the oracle).
        classes: class order (default: sorted distinct training labels).
        seq_len: model input length (default: the longest training sequence).
        model_options: extra :class:`OracleCNN` options (``channels``, ``kernel_size``, ...).
        config: training settings.
        on_epoch: called with ``(epoch, {"train_loss", "valid_accuracy", "seconds"})``.

    Returns:
        the oracle, with ``info["metrics"]`` = validation accuracy overall and per class and
        ``info["history"]`` = per-epoch numbers.
    """
    cfg = config or OracleTrainConfig()
    classes = list(classes) if classes is not None else sorted(set(train_labels))
    index = {c: i for i, c in enumerate(classes)}
    unknown = sorted(set(train_labels) - set(index)) or sorted(set(valid_labels) - set(index))
    if unknown:
        raise DDSMInputError(f"labels {unknown[:5]} are not among the oracle classes {classes}")
    seq_len = seq_len or max(len(s) for s in train_seqs)
    # Initialisation and dropout draw from torch's global generator (the oracle trains on the CPU):
    # seed it for the block only, so the run is reproducible and the caller's random state (CPU
    # and CUDA alike) is left as it was. Data order and augmentation draw from ``gen`` in _train.
    with seeded_global_rng(cfg.seed):
        return _train(train_seqs, train_labels, valid_seqs, valid_labels, classes=classes, index=index,
                      label_key=label_key, name=name, seq_len=seq_len, model_options=model_options, cfg=cfg,
                      on_epoch=on_epoch)


def _train(train_seqs, train_labels, valid_seqs, valid_labels, *, classes, index, label_key, name, seq_len,
           model_options, cfg, on_epoch) -> Oracle:
    """The body of :func:`train_oracle` (arguments already checked; runs inside a forked RNG)."""
    gen = torch.Generator().manual_seed(cfg.seed)
    model = OracleCNN(len(classes), **(model_options or {}))
    oracle = Oracle(model=model, classes=classes, label_key=label_key, seq_len=seq_len,
                    rc_average=cfg.rc_augment, name=name)
    x = oracle.encode(train_seqs)
    y = torch.tensor([index[c] for c in train_labels])
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    steps_per_epoch = math.ceil(len(x) / cfg.batch_size)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=cfg.lr, total_steps=cfg.epochs * steps_per_epoch,
                                                pct_start=0.1)
    best: tuple[float, dict[str, Tensor]] = (-1.0, {})
    history: list[dict[str, float]] = []
    t0 = time.time()
    stale = 0
    for epoch in range(1, cfg.epochs + 1):
        model.train()
        order = torch.randperm(len(x), generator=gen)
        total = 0.0
        for start in range(0, len(x), cfg.batch_size):
            idx = order[start : start + cfg.batch_size]
            xb, yb = x[idx], y[idx]
            if cfg.rc_augment:
                flip = torch.rand(len(xb), generator=gen) < 0.5
                xb = torch.where(flip[:, None], _reverse_complement(xb), xb)
            loss = F.cross_entropy(model(xb), yb)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            total += loss.detach().item() * len(idx)
        acc = oracle.accuracy(valid_seqs, valid_labels)
        row = {"epoch": epoch, "train_loss": total / len(x), "valid_accuracy": acc, "seconds": time.time() - t0}
        history.append(row)
        logger.info("oracle %s epoch %d: %s", name, epoch, row)
        if on_epoch is not None:
            on_epoch(epoch, row)
        if acc > best[0]:
            best = (acc, {k: v.detach().clone() for k, v in model.state_dict().items()})
            stale = 0
        else:
            stale += 1
        if stale >= cfg.patience or (cfg.max_seconds and time.time() - t0 > cfg.max_seconds):
            break
    model.load_state_dict(best[1])
    model.eval()
    preds = oracle.predict(valid_seqs)
    per_class = {c: float(np.mean([p == c for p, y_ in zip(preds, valid_labels) if y_ == c]))
                 for c in classes if c in set(valid_labels)}
    oracle.info = {
        "metrics": {"valid_accuracy": float(np.mean([p == y_ for p, y_ in zip(preds, valid_labels)])),
                    "valid_accuracy_per_class": per_class, "n_train": len(train_seqs),
                    "n_valid": len(valid_seqs)},
        "train": {**cfg.__dict__, "epochs_run": len(history)},
        "history": history,
    }
    return oracle
