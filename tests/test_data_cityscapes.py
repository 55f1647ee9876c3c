"""Cityscapes / Foggy-Cityscapes read from a small fake tree in the official layout.

Every expected box below is computed by hand from the polygons: PIL fills a polygon's boundary
pixels, so a rectangle with corners (x0, y0), (x1, y1) covers pixels x0..x1, y0..y1, whose box is
(x0, y0, x1 + 1, y1 + 1); objects later in the file cover earlier ones.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw

from robustune.data import create_dataset, list_datasets
from robustune.data.cityscapes import CITYSCAPES_CLASSES, FOGGY_BETAS, polygon_boxes
from robustune.data.detection import AnnotationError

W, H = 64, 32


def rect(x0, y0, x1, y1):
    return [[x0, y0], [x1, y0], [x1, y1], [x0, y1]]


def frame(x0, y0, x1, y1, inset):
    """The ``out of roi`` shape: the outer rectangle, then back around a hole (one polygon)."""
    return rect(x0, y0, x1, y1) + [[x0, y0]] + [[x0 + inset, y0 + inset], [x0 + inset, y1 - inset],
                                                 [x1 - inset, y1 - inset], [x1 - inset, y0 + inset],
                                                 [x0 + inset, y0 + inset]]


# Scene 1: occlusion in file order, a crowd group, a license plate and a deleted object (neither
# drawn), a caravan (occludes, no box), the out-of-roi frame with its hole.
SCENE_1 = [
    ("road", rect(0, 20, 63, 31)),
    ("car", rect(4, 6, 20, 15)),
    ("person", rect(10, 8, 13, 12)),          # on the car: a hole in the car's visible mask
    ("license plate", rect(4, 6, 6, 15)),     # id -1: not drawn, the car keeps these pixels
    ("truck", rect(30, 4, 45, 14)),
    ("bicycle", rect(50, 2, 55, 6)),
    ("building", rect(48, 0, 58, 8)),         # covers the whole bicycle: no box
    ("cargroup", rect(22, 18, 28, 24)),       # crowd
    ("rider", rect(40, 10, 47, 20)),          # covers the truck's x 40..45, y 10..14
    ("bus", rect(2, 24, 18, 31)),
    ("ego vehicle", rect(0, 28, 63, 31)),     # cuts the bus at y 28
    ("caravan", rect(56, 20, 63, 27)),
    ("motorcycle", rect(40, 10, 47, 20), True),   # deleted: not drawn, the rider stays whole
    ("person", [[50, 14], [58, 14], [54, 22]]),   # a triangle
    ("train", rect(0, 14, 3, 18)),
    ("out of roi", frame(0, 0, 63, 31, 1)),   # covers x 0..1, x 62..63, y 0..1, y 30..31
]
EXPECTED_1 = [  # (class, box, iscrowd, visible area)
    ("car", (4, 6, 21, 16), 0, 17 * 10 - 4 * 5),
    ("person", (10, 8, 14, 13), 0, 4 * 5),
    ("truck", (30, 4, 46, 15), 0, 16 * 11 - 6 * 5),
    ("car", (22, 18, 29, 25), 1, 7 * 7),
    ("rider", (40, 10, 48, 21), 0, 8 * 11),
    ("bus", (2, 24, 19, 28), 0, 17 * 4),
    ("person", (50, 14, 59, 23), 0, None),
    ("train", (2, 14, 4, 19), 0, 2 * 5),
]
# Scene 2: a car polygon with a hole, a person seen through it, a person group, a car leaving the
# image, and the two classes scene 1 lacks (the training split has every class).
SCENE_2 = [
    ("person", rect(17, 12, 22, 17)),
    ("car", frame(10, 5, 30, 25, 5)),         # hole: x 16..24, y 11..19 (the inner boundary is filled)
    ("persongroup", rect(40, 5, 50, 20)),
    ("car", rect(55, 25, 70, 40)),
    ("motorcycle", rect(33, 22, 38, 28)),
    ("bicycle", rect(2, 2, 7, 9)),
]
EXPECTED_2 = [
    ("person", (17, 12, 23, 18), 0, 6 * 6),
    ("car", (10, 5, 31, 26), 0, 21 * 21 - 9 * 9),
    ("person", (40, 5, 51, 21), 1, 11 * 16),
    ("car", (55, 25, 64, 32), 0, 9 * 7),
    ("motorcycle", (33, 22, 39, 29), 0, 6 * 7),
    ("bicycle", (2, 2, 8, 10), 0, 6 * 8),
]
CITIES = {"train": {"aachen": [SCENE_1, SCENE_2]}, "val": {"frankfurt": [SCENE_1], "lindau": [SCENE_2]}}


def polygon_json(scene) -> dict:
    objects = [{"label": o[0], "polygon": o[1], **({"deleted": 1} if len(o) > 2 else {})} for o in scene]
    return {"imgHeight": H, "imgWidth": W, "objects": objects}


def scene_image(scene, seed: int) -> np.ndarray:
    """Objects painted in class colours over noise (a detector can learn something from them)."""
    img = Image.fromarray(np.random.default_rng(seed).integers(0, 80, (H, W, 3), dtype=np.uint8))
    draw = ImageDraw.Draw(img)
    for label, poly, *_ in scene:
        base = label.removesuffix("group")
        if base in CITYSCAPES_CLASSES:
            k = CITYSCAPES_CLASSES.index(base)
            draw.polygon([tuple(p) for p in poly], fill=(60 + 25 * k, 255 - 25 * k, 128))
    return np.asarray(img)


def make_tree(root: Path, betas=FOGGY_BETAS) -> Path:
    """The official layout: leftImg8bit/, gtFine/ and leftImg8bit_foggy/ with ``betas``."""
    for split, cities in CITIES.items():
        for city, scenes in cities.items():
            for i, scene in enumerate(scenes):
                stem = f"{city}_{i:06d}_000019"
                for folder in ("leftImg8bit", "gtFine", "leftImg8bit_foggy"):
                    (root / folder / split / city).mkdir(parents=True, exist_ok=True)
                (root / "gtFine" / split / city / f"{stem}_gtFine_polygons.json").write_text(
                    json.dumps(polygon_json(scene)))
                clean = scene_image(scene, i)
                Image.fromarray(clean).save(root / "leftImg8bit" / split / city / f"{stem}_leftImg8bit.png")
                for beta in betas:  # fog: a blend towards grey, thicker with beta
                    t = 1 - np.exp(-beta * 100)
                    foggy = (clean * (1 - t) + 200 * t).astype(np.uint8)
                    Image.fromarray(foggy).save(root / "leftImg8bit_foggy" / split / city /
                                                f"{stem}_leftImg8bit_foggy_beta_{beta}.png")
    return root


def _check(target, expected):
    names = [CITYSCAPES_CLASSES[i] for i in target["labels"].tolist()]
    assert names == [e[0] for e in expected]
    assert target["boxes"].tolist() == [list(map(float, e[1])) for e in expected]
    assert target["iscrowd"].tolist() == [e[2] for e in expected]
    for area, e in zip(target["area"].tolist(), expected):
        if e[3] is not None:
            assert area == e[3], e


def test_boxes_from_polygons_match_the_hand_computed_ones(tmp_path):
    root = make_tree(tmp_path)
    ds = create_dataset("cityscapes", "val", root=str(root))
    assert ds.classes == CITYSCAPES_CLASSES and len(ds) == 2
    assert [r.source_id for r in ds.records] == ["frankfurt_000000_000019", "lindau_000000_000019"]
    image, target = ds[0]
    assert image.shape == (3, H, W) and 0 <= image.min() and image.max() <= 1
    _check(target, EXPECTED_1)
    _check(ds.target(1), EXPECTED_2)
    gt = ds.coco_ground_truth()  # what COCOeval sees: crowd regions keep iscrowd = 1
    assert [a["iscrowd"] for a in gt["annotations"]] == [e[2] for e in EXPECTED_1 + EXPECTED_2]
    assert len(create_dataset("cityscapes", "train", root=str(root))) == 2
    assert {"cityscapes", "foggy_cityscapes"} <= set(list_datasets())


def test_boxes_equal_the_extents_in_the_full_instance_image():
    """The box search window never cuts a visible pixel: compare with a search over the whole image."""
    rng = np.random.default_rng(0)
    for _ in range(30):
        scene = [(str(rng.choice(["car", "person", "road", "cargroup"])),
                  rng.integers(-10, 75, size=(int(rng.integers(3, 9)), 2)).tolist()) for _ in range(8)]
        got = polygon_boxes(polygon_json(scene), "random")
        img = Image.new("I", (W, H), 0)
        draw = ImageDraw.Draw(img)
        for i, (_, poly) in enumerate(scene):
            draw.polygon([tuple(p) for p in poly], fill=i + 1)
        ids = np.asarray(img)
        want = []
        for i, (label, _) in enumerate(scene):
            ys, xs = np.nonzero(ids == i + 1)
            if label != "road" and len(xs):
                want.append([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1])
        assert got["boxes"].tolist() == np.array(want, np.float32).reshape(-1, 4).tolist()


def test_foggy_cityscapes_levels_share_the_boxes(tmp_path):
    root = make_tree(tmp_path)
    clean = create_dataset("cityscapes", "val", root=str(root))
    for beta in (0.005, "0.01", 0.02):
        ds = create_dataset("foggy_cityscapes", "val", root=str(root), beta=beta)
        assert ds.records[0].file.endswith(f"frankfurt_000000_000019_leftImg8bit_foggy_beta_{float(beta)}.png")
        for i in range(len(ds)):
            assert ds.target(i)["boxes"].tolist() == clean.target(i)["boxes"].tolist()
        assert not np.array_equal(ds.image_array(0), clean.image_array(0))


def test_one_line_errors(tmp_path):
    root = make_tree(tmp_path / "full", betas=(0.02,))

    def error(exc, match, *args, **kw):
        with pytest.raises(exc, match=match) as info:
            create_dataset(*args, **kw)
        assert "\n" not in str(info.value)

    error(FileNotFoundError, r"no annotation folder .*gtFine.test \(splits present: train, val\)",
          "cityscapes", "test", root=str(root))
    error(FileNotFoundError, r"set data.root", "cityscapes", "val", root=None)
    clean_only = make_tree(tmp_path / "clean_only", betas=())
    shutil.rmtree(clean_only / "leftImg8bit_foggy")
    error(FileNotFoundError, r"no image folder .*leftImg8bit_foggy.val \(.*leftImg8bit_foggy does not exist\)",
          "foggy_cityscapes", "val", root=str(clean_only), beta=0.02)
    error(FileNotFoundError, r"no images of beta=0.01 .* beta values present: 0.02", "foggy_cityscapes", "val",
          root=str(root), beta=0.01)
    error(ValueError, r"beta 0.03 is not one of Foggy-Cityscapes' fog levels 0.005, 0.01, 0.02",
          "foggy_cityscapes", "val", root=str(root), beta=0.03)
    error(ValueError, r"needs data.options.beta", "foggy_cityscapes", "val", root=str(root))
    image = root / "leftImg8bit" / "val" / "lindau" / "lindau_000000_000019_leftImg8bit.png"
    image.unlink()
    error(FileNotFoundError, r"polygon file .*lindau_000000_000019_gtFine_polygons.json has no image .*"
                             r"lindau_000000_000019_leftImg8bit.png", "cityscapes", "val", root=str(root))
    foggy = root / "leftImg8bit_foggy" / "val" / "frankfurt" / "frankfurt_000000_000019_leftImg8bit_foggy_beta_0.02.png"
    foggy.unlink()  # the first image of the level: the level is still there (lindau), so the file is named
    error(FileNotFoundError, r"polygon file .*frankfurt_000000_000019_gtFine_polygons.json has no image "
                             r".*frankfurt_000000_000019_leftImg8bit_foggy_beta_0.02.png", "foggy_cityscapes", "val",
          root=str(root), beta=0.02)
    poly = root / "gtFine" / "train" / "aachen" / "aachen_000001_000019_gtFine_polygons.json"
    poly.write_text(json.dumps(polygon_json([("car", rect(1, 1, 5, 5)), ("spaceship", rect(1, 1, 5, 5))])))
    error(AnnotationError, r"aachen_000001_000019_gtFine_polygons.json: object 1 has label 'spaceship'",
          "cityscapes", "train", root=str(root))
