"""Errors raised by the weights toolkit; each names the file, what was expected and the fix."""

from __future__ import annotations

from collections.abc import Iterable

from graph.errors import DiffGraphError

_SHOWN = 12


class WeightsError(DiffGraphError, ValueError):
    """A weights file or merge request that cannot be used as asked."""


class UnsupportedFormatError(WeightsError):
    """The file is not in any format the toolkit reads."""


class UnmatchedKeysError(WeightsError):
    """Keys of an expert file that map to no module of the target model.

    Nothing is applied when this is raised; ``keys`` holds every unmatched key.
    """

    def __init__(self, source: str, keys: Iterable[str], target: str, hint: str = "") -> None:
        self.keys = sorted(set(keys))
        self.source = source
        shown = ", ".join(self.keys[:_SHOWN])
        more = f" (+{len(self.keys) - _SHOWN} more)" if len(self.keys) > _SHOWN else ""
        fix = hint or "check that the expert was trained for this base model family"
        super().__init__(
            f"{source}: {len(self.keys)} key(s) map to no module of {target}: {shown}{more}; "
            f"nothing was applied. Fix: {fix}"
        )


class ShapeMismatchError(WeightsError):
    """A tensor whose shape differs from the module or checkpoint it targets."""


class PickleRefusedError(WeightsError):
    """A pickled file (.ckpt/.pt/.bin) opened without the user's opt-in."""

    def __init__(self, path: object) -> None:
        super().__init__(
            f"{path} is a pickled file: loading it can run arbitrary code, so it is refused. "
            "Fix: use a .safetensors version of the file, or pass --allow-pickle "
            "(Settings.allow_pickle) to load it with torch.load(weights_only=True)"
        )


class MergeConfigError(WeightsError):
    """An unknown merge method, invalid method parameters or an unusable merge plan."""


class IncompatibleExpertsError(WeightsError):
    """Experts that cannot be merged together (different families or key sets)."""

    @classmethod
    def mismatch(
        cls, what: str, against: str, missing: list[str], wrong: list[str], fix: str
    ) -> IncompatibleExpertsError:
        """``what`` lacks ``missing`` tensors of ``against`` and has ``wrong`` shapes."""
        shown = "; ".join((missing + wrong)[:8])
        return cls(
            f"{what} does not fit {against}: {len(missing)} tensor(s) missing, {len(wrong)} of "
            f"another shape ({shown}); nothing was written or applied. Fix: {fix}"
        )


class NonFiniteError(WeightsError):
    """NaN or infinite values in an expert file or in a merge result."""
