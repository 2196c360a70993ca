"""The operating point's ranges are checked in one place, and every entry point
refuses the same bad values with the same words."""

from __future__ import annotations

import math

import numpy as np
import pytest

from vecexplore.errors import ConfigError
from vecexplore.eval.operating_point import (
    OperatingPoint,
    check_confidence,
    check_iou,
    valid_confidence,
    valid_iou,
)

BAD_IOU = [0, 0.0, -0.1, 1.0000001, 2, math.nan, math.inf, -math.inf, True, "0.5", None, [0.5]]
BAD_CONF = [-1e-9, 1.5, math.nan, math.inf, False, "1", [0.1]]
GOOD_IOU = [1e-9, 0.5, 1, 1.0, np.float32(0.75), np.float64(0.3)]
GOOD_CONF = [0, 0.0, 1, 0.25, np.float64(1.0)]


@pytest.mark.parametrize("value", BAD_IOU, ids=repr)
def test_bad_iou_is_refused_everywhere_alike(value):
    with pytest.raises(ConfigError, match=r"IoU threshold \(--iou\) must be a number in \(0, 1\]"):
        check_iou(value)
    with pytest.raises(ConfigError, match=r"IoU threshold \(--iou\)"):
        OperatingPoint(iou=value)
    assert not valid_iou(value)


@pytest.mark.parametrize("value", BAD_CONF, ids=repr)
def test_bad_confidence_is_refused_everywhere_alike(value):
    with pytest.raises(ConfigError, match=r"confidence threshold \(--conf\) must be a number in \[0, 1\]"):
        check_confidence(value)
    with pytest.raises(ConfigError, match=r"confidence threshold \(--conf\)"):
        OperatingPoint(confidence=value)
    assert not valid_confidence(value)


@pytest.mark.parametrize("iou", GOOD_IOU, ids=repr)
@pytest.mark.parametrize("conf", [*GOOD_CONF, None], ids=repr)
def test_good_points_come_back_as_floats(iou, conf):
    point = OperatingPoint(iou, conf)
    assert type(point.iou) is float and point.iou == float(iou)
    assert point.confidence is None if conf is None else (type(point.confidence) is float
                                                          and point.confidence == float(conf))


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    from vecexplore.demo import demo_source, generate_demo
    from vecexplore.io import load_dataset

    data = tmp_path_factory.mktemp("op") / "data"
    generate_demo(data, n=20, seed=3)
    return data, load_dataset(demo_source(data), check_images=False)


def test_library_entry_points_share_the_check(tiny, tmp_path):
    from vecexplore.builder import BuildConfig
    from vecexplore.demo import demo_source
    from vecexplore.eval.evaluate import evaluate
    from vecexplore.eval.matching import match_detections

    data, ds = tiny
    for call in (lambda: evaluate(ds, iou=0),
                 lambda: match_detections(ds.gt, ds.pred, iou=math.nan, num_images=ds.num_images,
                                          num_classes=len(ds.categories)),
                 lambda: BuildConfig(source=demo_source(data), out=tmp_path / "r", iou=1.5)):
        with pytest.raises(ConfigError, match=r"IoU threshold \(--iou\)"):
            call()
    for call in (lambda: evaluate(ds, confidence=1.5),
                 lambda: evaluate(ds, confidence=math.nan),
                 lambda: BuildConfig(source=demo_source(data), out=tmp_path / "r", confidence=-0.5)):
        with pytest.raises(ConfigError, match=r"confidence threshold \(--conf\)"):
            call()
    ev = evaluate(ds, iou=np.float32(0.75), confidence=np.float64(0.25))
    assert ev.iou == 0.75 and ev.confidence == 0.25


@pytest.mark.parametrize("argv", [["--iou", "0"], ["--iou", "nan"], ["--conf", "nan"], ["--iou=0", "--conf", "0.5"]])
def test_cli_evaluate_exits_2_naming_the_flag(tiny, capsys, argv):
    from vecexplore.cli import main

    data, _ = tiny
    with pytest.raises(SystemExit) as exit_:
        main(["evaluate", "--gt", str(data / "annotations.json"), "--pred", str(data / "predictions.json"), *argv])
    err = capsys.readouterr().err
    assert exit_.value.code == 2 and "Traceback" not in err
    flag = "--iou" if "iou" in argv[0] else "--conf"
    if "0" in argv[1] or argv[0].endswith("=0"):  # passes Typer's bounds: refused by the operating point
        assert f"({flag}) must be a number in" in err
    else:  # nan: Typer's own bounds refuse it first, naming the flag
        assert f"Invalid value for '{flag}'" in err
