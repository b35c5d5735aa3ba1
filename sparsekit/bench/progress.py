"""A progress bar on stderr: tqdm when installed, else a plain line every ~10%."""
import sys


class _Plain:
    def __init__(self, total, desc):
        self.total, self.desc, self.n, self._shown = max(total, 1), desc, 0, -1

    def update(self, k=1):
        self.n += k
        tenth = 10 * self.n // self.total
        if tenth != self._shown:
            self._shown = tenth
            print(f"{self.desc}: {self.n}/{self.total} ({100 * self.n // self.total}%)",
                  file=sys.stderr, flush=True)

    def set_postfix_str(self, text):
        pass

    def close(self):
        pass


class _Silent(_Plain):
    def update(self, k=1):
        pass


def progress(total, desc, enabled=True):
    if not enabled:
        return _Silent(total, desc)
    try:
        from tqdm import tqdm
    except ImportError:
        return _Plain(total, desc)
    return tqdm(total=total, desc=desc, file=sys.stderr, leave=False, dynamic_ncols=True)
