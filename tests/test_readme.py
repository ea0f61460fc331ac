"""README.md's examples, run, so that the README cannot drift from the code.

Every fenced block of README.md is one of:

* ```bash / ```sh: commands. `anyshape ...` lines run in this process through `anyshape.cli.main`
  (the function behind the `anyshape` command) and must exit 0; other lines run in bash.
* ```python: run as a script in a fresh namespace; a block that starts with `>>>` runs as a
  doctest, so the values it shows are checked too.
* ```text: output. A transcript's `$ ` lines are commands and run as above; each must exit 0, or
  with the code that a following `$ echo $?` line shows. The lines a transcript shows under an
  `anyshape` or `python` command must be printed by it (stdout or stderr, in any order, spaces
  and line breaks as they come): `...` stands for any text (alone on a line: any lines), a
  timing ("in 0.9 s (3.4 images/s)") for any timing, and the lines that depend on random weights
  (ranked predictions, CSV result rows, convert's parity figures; see WEIGHT_DEPENDENT) are not
  compared. Other commands' output (`ls`) is the user's shell's, not compared.

Blocks run in README order, each in the same workspace folder, made here with the files the
README names (photos/, my_images/, runs/digits/model.keras, my_state_dict.pth), offline:
pretrained sets are stand-ins with the published layout and random values, in a weights cache of
their own (KERAS_HOME), and the registry takes their hashes (the published files cannot be
downloaded here). A block that cannot run here says why in the line above it:

    <!-- readme-test: not run: REASON -->

Its `anyshape` commands are still parsed by the CLI's parser and its Python compiled; the test
counts such blocks, lists them in a warning, and keeps their number from growing unnoticed.
"""

from __future__ import annotations

import dataclasses
import doctest
import gc
import hashlib
import os
import re
import shlex
import shutil
import subprocess
import sys
import urllib.request
import warnings
from dataclasses import dataclass
from pathlib import Path

import keras
import numpy as np
import pytest
from PIL import Image

from anyshape import cli
from anyshape.weights import REGISTRY

README = Path(__file__).resolve().parent.parent / "README.md"
LANGUAGES = ("bash", "sh", "python", "text")
NOT_RUN = re.compile(r"^<!--\s*readme-test:\s*not run:\s*(.+?)\s*-->$")
MAX_NOT_RUN = 8  # raise it only with a reason in the README beside each new marker (8: the Xception worked example downloads Keras' file)


@dataclass
class Block:
    line: int  # of the opening fence, 1-based
    language: str
    text: str
    not_run: str | None  # the marker's reason

    @property
    def name(self) -> str:
        return f"README.md:{self.line} {self.language}"


def readme_blocks(text: str) -> list[Block]:
    lines = text.splitlines()
    blocks, i = [], 0
    while i < len(lines):
        fence = re.match(r"^```(\S*)\s*$", lines[i])
        if fence is None:
            i += 1
            continue
        end = next(j for j in range(i + 1, len(lines)) if lines[j].startswith("```"))
        marker = NOT_RUN.match(lines[i - 1].strip()) if i else None
        blocks.append(Block(i + 1, fence.group(1), "\n".join(lines[i + 1 : end]), marker and marker.group(1)))
        i = end + 1
    return blocks


@dataclass
class Command:
    text: str
    exit_code: int = 0


# Transcript lines whose text depends on the random weights the README's commands run with.
WEIGHT_DEPENDENT = (
    re.compile(r"^\s*\d+\.\s+\S+\s+\d+\.\d+\s+\(n\d{8}\)$"),  # a ranked prediction: label, score, wnid
    re.compile(r"^[^,\s]+,\d+,\d+,n\d{8},"),  # a CSV result row
    re.compile(r"^\s*max abs logit difference: "),  # convert's parity figures
)
TIMING = re.compile(r"in \d+(?:\.\d+)? s \(\d+(?:\.\d+)? images/s\)")


def transcript(block: Block) -> list[tuple[Command, list[str]]]:
    """A transcript's commands, each with the output lines shown under it."""
    found: list[tuple[Command, list[str]]] = []
    lines = block.text.splitlines()
    for i, line in enumerate(lines):
        if line == "$ echo $?":
            found[-1][0].exit_code = int(lines[i + 1])
        elif line.startswith("$ "):
            found.append((Command(line[2:]), []))
        elif found and not (i and lines[i - 1] == "$ echo $?"):
            found[-1][1].append(line)
    return found


def output_pattern(line: str) -> re.Pattern | None:
    """What a transcript's output line must match in the printed text (whitespace collapsed), or
    None for a line that is not compared."""
    text = " ".join(line.split())
    if not text or text == "..." or any(p.search(line) for p in WEIGHT_DEPENDENT):
        return None
    timed = [re.escape(part) for part in TIMING.split(text)]
    wild = [r".*?".join(part.split(re.escape("..."))) for part in timed]
    return re.compile(TIMING.pattern.join(wild))


def check_output(command: Command, shown: list[str], printed: str) -> None:
    text = " ".join(printed.split())
    missing = [line for line in shown if (p := output_pattern(line)) is not None and not p.search(text)]
    assert not missing, f"$ {command.text}\nthe README shows lines it did not print: {missing}\nprinted:\n{printed}"


def commands(block: Block) -> list[Command]:
    """The commands of a shell block (continuation lines joined) or of a transcript's `$ ` lines."""
    if block.language == "text":
        return [command for command, _ in transcript(block)]
    joined = re.sub(r"\\\n\s*", " ", block.text)
    return [Command(line) for line in joined.splitlines() if shlex.split(line, comments=True)]


BLOCKS = readme_blocks(README.read_text())


def test_every_block_is_of_a_kind_the_test_knows():
    for block in BLOCKS:
        assert block.language in LANGUAGES, f"{block.name}: use one of {LANGUAGES} (see tests/test_readme.py)"


def test_blocks_not_run_are_marked_with_a_reason_counted_and_listed():
    not_run = [b for b in BLOCKS if b.not_run]
    listing = "\n".join(f"  {b.name}: {b.not_run}" for b in not_run)
    warnings.warn(f"{len(not_run)} README block(s) not run (only parsed):\n{listing}", stacklevel=1)
    assert len(not_run) <= MAX_NOT_RUN, f"more README blocks are not run than before:\n{listing}"
    for block in not_run:
        assert len(block.not_run.split()) >= 4, f"{block.name}: say why it cannot run here"
    marked = [i + 1 for i, line in enumerate(README.read_text().splitlines()) if NOT_RUN.match(line.strip())]
    assert len(marked) == len(not_run), f"a marker must be the line right above its block's fence (lines {marked})"
    assert len(BLOCKS) - len(not_run) >= 10  # most of the README runs


# --- the workspace ------------------------------------------------------------------------------


def _photos(root: Path) -> None:
    """The folder of the README's predict session."""
    from skimage import data

    (root / "cats").mkdir(parents=True)
    Image.fromarray(data.astronaut()).save(root / "astronaut.jpg", quality=90)
    Image.fromarray(data.camera()).save(root / "camera.png")
    Image.fromarray(data.chelsea()).save(root / "cats" / "chelsea.jpg", quality=90)
    (root / "notes.txt").write_text("not an image\n")
    Image.fromarray(data.coffee()[:60, :60]).save(root / "thumb.png")  # below 75 px


def _digit_images(root: Path, count: int = 6) -> None:
    from sklearn.datasets import load_digits

    root.mkdir(parents=True)
    digits = load_digits()
    for i in range(count):
        pixels = np.rint(digits.images[i] * 255 / 16).astype(np.uint8)
        Image.fromarray(pixels).resize((80, 80), Image.Resampling.BILINEAR).save(root / f"digit{i}.png")


def _digits_run(root: Path) -> None:
    """A stand-in for the run folder of `anyshape train digits` (the README's run takes minutes):
    the same model and record, untrained."""
    from anyshape.data_config import DataConfig
    from anyshape.inception_v3 import InceptionV3
    from anyshape.model_info import ModelInfo, save_model

    root.mkdir(parents=True)
    model = InceptionV3(weights=None, input_shape=(75, 75, 1), classes=10)
    config = dataclasses.replace(DataConfig().for_training(), input_size=(75, 75))
    save_model(model, root / "model.keras", ModelInfo(config, tuple(str(i) for i in range(10)), None))


def _stand_in_weights(cache: Path, monkeypatch) -> None:
    """Files with the published sets' layouts and random values where anyshape looks for them, and
    the registry told their hashes (every other step of loading them is the real one)."""
    import timm
    import torch
    from reference.torch_inception import torchvision_inception
    from safetensors.torch import save_file
    from test_weights_keras_h5 import write_legacy_h5

    cache.mkdir(parents=True)
    keras_app = keras.applications.InceptionV3(weights=None)
    imagenet = REGISTRY["imagenet"]
    write_legacy_h5(keras_app, cache / imagenet.file_name)
    write_legacy_h5(keras_app, cache / imagenet.file_name_notop, top=False)
    del keras_app
    tv = REGISTRY["torchvision.IMAGENET1K_V1"]
    torch.save(torchvision_inception(aux_logits=True).state_dict(), cache / tv.file_name)
    timm_set = REGISTRY["inception_v3.tf_in1k"]
    state = timm.create_model("inception_v3.tf_in1k", pretrained=False).state_dict()
    save_file({k: v.contiguous() for k, v in state.items()}, str(cache / timm_set.file_name))

    def digest(name: str, algorithm: str) -> str:
        return hashlib.new(algorithm, (cache / name).read_bytes()).hexdigest()

    monkeypatch.setitem(
        REGISTRY,
        "imagenet",
        dataclasses.replace(
            imagenet,
            file_hash=digest(imagenet.file_name, "md5"),
            file_hash_notop=digest(imagenet.file_name_notop, "md5"),
        ),
    )
    monkeypatch.setitem(REGISTRY, tv.name, dataclasses.replace(tv, file_hash=digest(tv.file_name, "sha256")[:8]))


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    root = tmp_path_factory.mktemp("readme")
    with pytest.MonkeyPatch.context() as m:
        m.setattr(urllib.request, "urlopen", lambda *a, **k: pytest.fail("the README's commands must run offline"))
        m.setenv("KERAS_HOME", str(root / "keras_home"))
        _stand_in_weights(root / "keras_home" / "models", m)
        work = root / "work"
        _photos(work / "photos")
        _digit_images(work / "my_images")
        _digits_run(work / "runs" / "digits")
        # "your own fine-tune": a torchvision state dict of random weights (those of the stand-in above)
        shutil.copy(
            root / "keras_home" / "models" / REGISTRY["torchvision.IMAGENET1K_V1"].file_name, work / "my_state_dict.pth"
        )
        keras.backend.clear_session()
        yield work


def _shell_env() -> dict:
    env = dict(os.environ)
    env["PATH"] = os.pathsep.join([os.path.dirname(sys.executable), env.get("PATH", "")])
    env["PYTHONPATH"] = os.pathsep.join(p for p in sys.path if p)
    return env


def _run_command(command: Command, workspace: Path, capsys) -> str:
    """Runs the command; returns what it printed (stdout, then stderr)."""
    argv = shlex.split(command.text, comments=True)
    if argv[0] == "anyshape":
        capsys.readouterr()  # what earlier commands printed is theirs
        try:
            code = cli.main(argv[1:])
        except SystemExit as e:  # argparse refused the command line
            code = e.code
        out, err = capsys.readouterr()
        assert "Traceback" not in err
    else:
        done = subprocess.run(
            ["bash", "-c", command.text], cwd=workspace, env=_shell_env(), capture_output=True, text=True
        )
        code, out, err = done.returncode, done.stdout, done.stderr
    assert code == command.exit_code, f"$ {command.text}\nexit code {code}, the README says {command.exit_code}\n{err}"
    return out + "\n" + err


def _is_doctest(block: Block) -> bool:
    return block.text.lstrip().startswith(">>>")


def _run_python(block: Block) -> None:
    if _is_doctest(block):
        test = doctest.DocTestParser().get_doctest(block.text, {}, block.name, str(README), block.line)
        runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
        runner.run(test, out=sys.stdout.write)
        assert not runner.failures, f"{block.name}: the doctest's output differs (see the captured stdout)"
    else:
        code = compile("\n" * block.line + block.text, str(README), "exec")  # tracebacks name README lines
        exec(code, {"__name__": "__readme__"})


@pytest.mark.parametrize("block", [b for b in BLOCKS if b.language != "text" or commands(b)], ids=lambda b: b.name)
def test_readme_block(block, workspace, monkeypatch, capsys):
    monkeypatch.chdir(workspace)
    if block.not_run:  # what can be checked without running it: the flags, and the Python's syntax
        if block.language == "python":
            examples = doctest.DocTestParser().get_examples(block.text) if _is_doctest(block) else None
            compile("".join(e.source for e in examples) if examples else block.text, str(README), "exec")
        for command in commands(block) if block.language != "python" else []:
            argv = shlex.split(command.text, comments=True)
            if argv[0] == "anyshape":
                cli.build_parser().parse_args(argv[1:])
        return
    try:
        if block.language == "python":
            _run_python(block)
        elif block.language == "text":
            for command, shown in transcript(block):
                printed = _run_command(command, workspace, capsys)
                if shlex.split(command.text, comments=True)[0] in ("anyshape", "python"):
                    check_output(command, shown, printed)
        else:
            for command in commands(block):
                _run_command(command, workspace, capsys)
    finally:
        keras.backend.clear_session()
        gc.collect()


def test_transcript_output_lines_are_compared():
    """The matcher of transcripts' output: what it compares, what it lets vary, and that the
    README's run transcripts give it lines to compare."""
    shown = ["stage  what", "   1. tabby   0.5000  (n02123045)", "...", "wrote .../m.keras (10 classes)"]
    shown += ["anyshape predict: 3 file(s): 3 ok, 0 failed in 0.9 s (3.4 images/s)"]
    printed = "stage what\n   1. hammerhead 0.0010 (n01494475)\nwrote runs/x/m.keras (10\nclasses)\n"
    printed += "anyshape predict: 3 file(s): 3 ok, 0 failed in 12 s (0.25 images/s)\n"
    check_output(Command("anyshape x"), shown, printed)
    for was, now in [("3 ok, 0 failed", "2 ok, 1 failed"), ("(10\nclasses)", "(9\nclasses)"), ("what", "where")]:
        with pytest.raises(AssertionError, match="the README shows lines it did not print"):
            check_output(Command("anyshape x"), shown, printed.replace(was, now))
    compared = [
        line
        for block in BLOCKS
        if block.language == "text" and not block.not_run
        for command, lines in transcript(block)
        if shlex.split(command.text, comments=True)[0] in ("anyshape", "python")
        for line in lines
        if output_pattern(line) is not None
    ]
    assert len(compared) >= 20, compared
