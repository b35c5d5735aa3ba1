"""Knowledge distillation (Hinton et al. 2015) with a small trainer.

    loss = kd_loss(student_logits, teacher_logits, targets, temperature=4, alpha=0.9)
    history = distill(teacher, student, loader, epochs=5,
                      callbacks=[pruner.step])   # prune while distilling

kd_loss = alpha * T^2 * KL(softmax(t / T) || softmax(s / T))
        + (1 - alpha) * cross_entropy(s, targets)
(the T^2 keeps the soft term's gradients on the hard term's scale).
"""
from sparsekit.compress._torch import nn, torch

F = torch.nn.functional


def kd_loss(student_logits, teacher_logits, targets=None, temperature=4.0, alpha=0.9):
    """Hinton distillation loss, averaged over the batch (rows of the logits).

    targets: class indices [B] for the hard term, or None (soft term only,
    whatever alpha is).
    """
    if student_logits.shape != teacher_logits.shape:
        raise ValueError(f"teacher_logits: shape {tuple(teacher_logits.shape)} differs from "
                         f"student_logits {tuple(student_logits.shape)}")
    if not temperature > 0:
        raise ValueError(f"temperature: expected a positive number, got {temperature}")
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha: expected a value in [0, 1], got {alpha}")
    t = float(temperature)
    log_p_s = F.log_softmax(student_logits / t, dim=-1)
    log_p_t = F.log_softmax(teacher_logits.detach() / t, dim=-1)
    soft = F.kl_div(log_p_s.reshape(-1, log_p_s.shape[-1]),
                    log_p_t.reshape(-1, log_p_t.shape[-1]),
                    reduction="batchmean", log_target=True) * (t * t)
    if targets is None:
        return soft
    hard = F.cross_entropy(student_logits.reshape(-1, student_logits.shape[-1]),
                           targets.reshape(-1))
    return alpha * soft + (1.0 - alpha) * hard


def _split(batch):
    """(inputs, targets or None) from a batch: (x, y), [x, y], {"x"/"inputs", "y"/"labels"} or x."""
    if isinstance(batch, (tuple, list)):
        if len(batch) == 2:
            return batch[0], batch[1]
        if len(batch) == 1:
            return batch[0], None
        raise ValueError(f"data: expected batches (x, y) or x, got a {len(batch)}-tuple")
    return batch, None


def distill(teacher, student, data, epochs=1, optimizer=None, lr=1e-3, temperature=4.0,
            alpha=0.9, callbacks=(), progress=True, seed=None):
    """Train `student` to match `teacher` on `data` and return the per-epoch
    mean losses.

    data: an iterable of batches (x, y) (hard labels used with weight 1 - alpha)
        or x alone (soft loss only); re-iterated every epoch (a DataLoader or list).
    optimizer: defaults to Adam(student.parameters(), lr).
    callbacks: functions called after every optimizer step with (step, loss),
        e.g. a GradualPruner's `step` or a MaskKeeper's `apply` wrapped in a lambda.
        To keep a pruned student's zeros pass the optimizer to keep_masks().
    progress: show a tqdm progress bar (off with progress=False).
    seed: torch.manual_seed(seed) first, for reproducible shuffling/dropout.
    """
    if not isinstance(teacher, nn.Module) or not isinstance(student, nn.Module):
        raise TypeError("teacher, student: expected torch.nn.Module instances")
    if isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 1:
        raise ValueError(f"epochs: expected a positive int, got {epochs!r}")
    if optimizer is None and not (isinstance(lr, (int, float)) and not isinstance(lr, bool)
                                  and lr > 0):
        raise ValueError(f"lr: expected a positive number, got {lr!r}")
    if not temperature > 0:  # checked here too so a bad value fails before any training
        raise ValueError(f"temperature: expected a positive number, got {temperature}")
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha: expected a value in [0, 1], got {alpha}")
    if callable(callbacks):
        callbacks = (callbacks,)
    if seed is not None:
        torch.manual_seed(seed)
    if optimizer is None:
        optimizer = torch.optim.Adam(student.parameters(), lr=lr)
    teacher_was_training = teacher.training
    teacher.eval()
    student.train()
    try:
        total = len(data) * epochs
    except TypeError:
        total = None
    bar = None
    if progress:
        from tqdm.auto import tqdm
        bar = tqdm(total=total, desc="distill", unit="batch")
    history, step = [], 0
    try:
        for epoch in range(epochs):
            run, n = 0.0, 0
            for batch in data:
                x, y = _split(batch)
                with torch.no_grad():
                    t_logits = teacher(x)
                loss = kd_loss(student(x), t_logits, y, temperature, alpha)
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
                step += 1
                for cb in callbacks:
                    cb(step, float(loss.detach()))
                run += float(loss.detach())
                n += 1
                if bar is not None:
                    bar.update(1)
                    bar.set_postfix(epoch=epoch, loss=f"{run / n:.4f}")
            history.append(run / max(n, 1))
    finally:
        if bar is not None:
            bar.close()
        teacher.train(teacher_was_training)
    student.eval()
    return history
