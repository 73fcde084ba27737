"""Download a SoccerNet Ball Action Spotting release, then import it split by split.

* ``2024`` (BAS-2024, teams home/away): SoccerNet's own downloader leaves one zip per split in
  ``<workspace>/soccernet/spotting-ball-2024/``.
* ``2025`` (the Team Ball Action Spotting task, teams left/right, label files with a
  ``halftime``): the Hugging Face dataset ``SoccerNet/SN-BAS-2025`` (gated: its terms must be
  accepted, and the hub needs a token) holds one zip per split, labels and videos together;
  ``huggingface_hub`` fetches the splits asked for into ``<workspace>/soccernet/SN-BAS-2025/``.

Each split's zip (or its unpacked folder) is imported with its split name through the same
path as ``launch.py import``. ``source`` instead names a local copy of a release's layout
(``<split>.zip`` or ``<split>/`` per split): a machine without the network imports that.
"""
from __future__ import annotations

from pathlib import Path

from core.errors import BallspotError
from core.ingest import ImportReport, import_source
from core.progress import Progress, Step, quiet
from core.splits import SPLITS
from core.store import Store
from core.workspace import Workspace

TASK = "spotting-ball-2024"


#: The releases ``launch.py download --release`` knows, each with the folder of ``soccernet/``
#: its split zips land in; 2024 is the default.
RELEASES: dict[str, str] = {"2024": TASK, "2025": "SN-BAS-2025"}
DEFAULT_RELEASE = "2024"
#: The 2025 release on the Hugging Face hub, and the page where its terms are accepted.
HF_DATASET = "SoccerNet/SN-BAS-2025"
HF_DATASET_URL = f"https://huggingface.co/datasets/{HF_DATASET}"


def fetch(workspace: Workspace, splits: list[str]) -> list[Path]:
    """Run SoccerNet's downloader (network) and return the split zips it left."""
    from SoccerNet.Downloader import SoccerNetDownloader

    target = workspace.soccernet_dir
    target.mkdir(parents=True, exist_ok=True)
    SoccerNetDownloader(LocalDirectory=str(target)).downloadDataTask(task=TASK, split=list(splits))
    return split_zips(workspace, splits)


def split_zips(workspace: Workspace, splits: list[str]) -> list[Path]:
    found = []
    for split in splits:
        path = workspace.soccernet_dir / TASK / f"{split}.zip"
        if not path.is_file():
            raise BallspotError(
                f"{path}: the SoccerNet downloader did not produce the {split} split "
                "(no network, or no access to the dataset on Hugging Face?)"
            )
        found.append(path)
    return found


def _hub_failure(exc: Exception, split: str) -> BallspotError:
    """What a failed hub download means for the user, and what to do about it."""
    from huggingface_hub.errors import (
        EntryNotFoundError,
        HfHubHTTPError,
        LocalEntryNotFoundError,
        OfflineModeIsEnabled,
        RepositoryNotFoundError,
    )

    status = getattr(getattr(exc, "response", None), "status_code", None)
    if isinstance(exc, RepositoryNotFoundError) or status in (401, 403):
        # Gated (GatedRepoError is a RepositoryNotFoundError) or no token: the hub answers 401/403.
        return BallspotError(
            f"no access to the Hugging Face dataset {HF_DATASET} ({type(exc).__name__}): accept its terms at "
            f"{HF_DATASET_URL} and log in with `hf auth login` (or `huggingface-cli login`), or set HF_TOKEN")
    if isinstance(exc, LocalEntryNotFoundError | OfflineModeIsEnabled | ConnectionError | TimeoutError):
        # LocalEntryNotFoundError: no answer from the hub and nothing cached (no network, HF_HUB_OFFLINE).
        return BallspotError(
            f"cannot reach the Hugging Face hub to download {split}.zip of {HF_DATASET} ({type(exc).__name__}); "
            "with a local copy of it (the split zips or their unpacked folders), import that instead: "
            f"python launch.py download --release 2025 --split {split} --from FOLDER")
    if isinstance(exc, EntryNotFoundError):
        return BallspotError(f"the Hugging Face dataset {HF_DATASET} has no {split}.zip")
    if isinstance(exc, HfHubHTTPError):
        return BallspotError(f"the Hugging Face hub refused {split}.zip of {HF_DATASET}: {exc}")
    return BallspotError(f"downloading {split}.zip of {HF_DATASET} failed ({type(exc).__name__}: {exc})")


def fetch_2025(workspace: Workspace, splits: list[str], progress: Progress | None = None) -> list[Path]:
    """Download the split zips of SN-BAS-2025 with ``huggingface_hub`` (its token: ``hf auth
    login`` or HF_TOKEN) into ``soccernet/SN-BAS-2025/``; a zip already there and unchanged on
    the hub is not downloaded again. Failures become a :class:`BallspotError` saying what to do."""
    import huggingface_hub

    say = progress or quiet
    target = workspace.soccernet_dir / RELEASES["2025"]
    target.mkdir(parents=True, exist_ok=True)
    found = []
    for i, split in enumerate(splits):
        say(Step(i, len(splits), f"downloading {split}.zip of {HF_DATASET}"))
        try:
            path = huggingface_hub.hf_hub_download(repo_id=HF_DATASET, repo_type="dataset", filename=f"{split}.zip",
                                                   local_dir=target)
        except Exception as exc:  # noqa: BLE001 - the network's and the hub's errors, each explained
            raise _hub_failure(exc, split) from None
        found.append(Path(path))
    return found


def local_splits(source: str | Path, splits: list[str]) -> list[Path]:
    """The splits of a local copy of a release: ``<split>.zip`` or an unpacked ``<split>/`` each."""
    root = Path(source).expanduser()
    if not root.is_dir():
        raise BallspotError(f"{root}: not a folder (expected the release's <split>.zip files or <split>/ folders)")
    found, missing = [], []
    for split in splits:
        zipped, folder = root / f"{split}.zip", root / split
        if zipped.is_file():
            found.append(zipped)
        elif folder.is_dir():
            found.append(folder)
        else:
            missing.append(split)
    if missing:
        there = sorted(p.name for p in root.iterdir() if not p.name.startswith("."))[:10]
        raise BallspotError(f"{root}: no {' or '.join(f'{s}.zip or {s}/' for s in missing)} "
                            f"(found: {', '.join(there) or 'nothing'})")
    return found


def download(store: Store, workspace: Workspace, splits: list[str], *, release: str = DEFAULT_RELEASE,
             source: str | Path | None = None, replace: bool = False,
             progress: Progress | None = None) -> list[ImportReport]:
    """Download the splits of ``release`` (or take them from ``source``, a local copy of its
    layout) and import each with its split name, one split after the other."""
    unknown = [s for s in splits if s not in SPLITS]
    if unknown:
        raise BallspotError(f"unknown split {', '.join(unknown)} (known: {', '.join(SPLITS)})")
    if release not in RELEASES:
        raise BallspotError(f"unknown release {release!r} (known: {', '.join(RELEASES)})")
    if source is not None:
        paths = local_splits(source, splits)
    elif release == "2025":
        paths = fetch_2025(workspace, splits, progress)
    else:
        paths = fetch(workspace, splits)
    reports = []
    for split, path in zip(splits, paths):
        reports.append(import_source(store, path, workspace=workspace, split=split, replace=replace,
                                     progress=progress))
    return reports
