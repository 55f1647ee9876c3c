"""Detection datasets: digits_det, COCO json, VOC XML (RTTS), ExDark text; clear annotation errors."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from robustune.data import create_dataset
from robustune.data.detection import AnnotationError, detection_collate


def test_digits_det_is_deterministic_with_valid_boxes():
    a = create_dataset("digits_det", "test", n_images=20)
    b = create_dataset("digits_det", "test", n_images=20, seed=0)
    assert len(a) == 20 and a.classes[3] == "three"
    for i in range(20):
        x, t = a[i]
        y, u = b[i]
        assert x.shape == (3, 64, 64) and 0 <= float(x.min()) and float(x.max()) <= 1
        assert (x == y).all() and (t["boxes"] == u["boxes"]).all()
        n = len(t["labels"])
        assert 1 <= n <= 4 and ((t["labels"] >= 0) & (t["labels"] < 10)).all()
        boxes = t["boxes"]
        assert (boxes[:, 2] > boxes[:, 0]).all() and (boxes[:, 3] > boxes[:, 1]).all()
        assert (boxes >= 0).all() and (boxes <= 64).all()
        # the box is tight: the digit's ink touches each side of it
        arr = a.image_array(i).astype(float).max(2)
        x1, y1, x2, y2 = (int(v) for v in boxes[0])
        assert arr[y1:y2, x1:x2].max() > arr.min() + 60
    other = create_dataset("digits_det", "test", n_images=20, seed=1)
    assert not (other[0][0] == a[0][0]).all()
    images, targets = detection_collate([a[0], a[1]])
    assert len(images) == 2 and targets[1]["image_id"] == 1


def test_digits_det_n_images_per_split_and_smaller_sets_are_prefixes():
    small = create_dataset("digits_det", "test", n_images={"test": 5, "train": 7})
    big = create_dataset("digits_det", "test", n_images=12)
    assert len(small) == 5 and len(create_dataset("digits_det", "train", n_images={"test": 5, "train": 7})) == 7
    assert len(create_dataset("digits_det", "val", n_images={"test": 5})) == 100  # unnamed split: its default
    assert all((small[i][0] == big[i][0]).all() and (small[i][1]["boxes"] == big[i][1]["boxes"]).all()
               for i in range(5))
    with pytest.raises(ValueError, match="unknown split.*'tset'"):
        create_dataset("digits_det", "test", n_images={"tset": 5})


def _write_coco(tmp_path, anns, images=None, categories=None, make_files=True):
    img_dir = tmp_path / "val2017"
    img_dir.mkdir(exist_ok=True)
    images = images or [{"id": 7, "file_name": "a.png", "width": 40, "height": 30},
                        {"id": 9, "file_name": "b.png", "width": 40, "height": 30}]
    if make_files:
        for im in images:
            Image.fromarray(np.full((im["height"], im["width"], 3), 100, np.uint8)).save(img_dir / im["file_name"])
    categories = categories or [{"id": 18, "name": "dog"}, {"id": 1, "name": "person"}]
    (tmp_path / "annotations").mkdir(exist_ok=True)
    path = tmp_path / "annotations" / "instances_val2017.json"
    path.write_text(json.dumps({"images": images, "annotations": anns, "categories": categories}))
    return path


def test_coco_loader_maps_categories_and_keeps_crowd(tmp_path):
    anns = [{"id": 1, "image_id": 7, "category_id": 18, "bbox": [1, 2, 10, 5], "area": 33.0, "iscrowd": 0},
            {"id": 2, "image_id": 7, "category_id": 1, "bbox": [0, 0, 40, 30], "area": 1200.0, "iscrowd": 1},
            {"id": 3, "image_id": 9, "category_id": 1, "bbox": [5, 5, 0, 4], "iscrowd": 0}]  # degenerate: dropped
    _write_coco(tmp_path, anns)
    ds = create_dataset("coco", "val", root=str(tmp_path))
    assert ds.classes == ["person", "dog"] and ds.category_ids == [1, 18]
    x, t = ds[0]
    assert x.shape == (3, 30, 40)
    assert t["boxes"].tolist() == [[1, 2, 11, 7], [0, 0, 40, 30]]
    assert t["labels"].tolist() == [1, 0] and t["iscrowd"].tolist() == [0, 1] and t["area"][0] == 33.0
    assert len(ds[1][1]["labels"]) == 0
    gt = ds.coco_ground_truth()
    assert gt["annotations"][0]["bbox"] == [1, 2, 10, 5] and gt["annotations"][0]["category_id"] == 2


@pytest.mark.parametrize("case, message", [
    ("outside", "annotation id 5"),
    ("category", "category_id 3"),
    ("missing", "b.png"),
])
def test_coco_loader_errors_name_file_and_entry(tmp_path, case, message):
    ann = {"id": 5, "image_id": 9, "category_id": 1, "bbox": [30, 2, 20, 5], "iscrowd": 0}  # x2 = 50 > 40
    if case == "category":
        ann = {**ann, "bbox": [1, 2, 3, 4], "category_id": 3}
    path = _write_coco(tmp_path, [ann] if case != "missing" else [], make_files=case != "missing")
    if case == "missing":
        Image.fromarray(np.zeros((30, 40, 3), np.uint8)).save(tmp_path / "val2017" / "a.png")
    error = FileNotFoundError if case == "missing" else AnnotationError
    with pytest.raises(error) as info:
        create_dataset("coco", "val", root=str(tmp_path))
    assert message in str(info.value) and str(path) in str(info.value)


def _voc_xml(objects, width=50, height=40, filename="img1.jpg"):
    objs = "".join(f"<object><name>{n}</name><difficult>{d}</difficult><bndbox><xmin>{b[0]}</xmin>"
                   f"<ymin>{b[1]}</ymin><xmax>{b[2]}</xmax><ymax>{b[3]}</ymax></bndbox></object>"
                   for n, b, d in objects)
    return (f"<annotation><filename>{filename}</filename><size><width>{width}</width><height>{height}</height>"
            f"<depth>3</depth></size>{objs}</annotation>")


def test_rtts_voc_xml_and_unknown_class_error(tmp_path):
    (tmp_path / "Annotations").mkdir()
    (tmp_path / "JPEGImages").mkdir()
    Image.fromarray(np.zeros((40, 50, 3), np.uint8)).save(tmp_path / "JPEGImages" / "img1.jpg")
    xml = tmp_path / "Annotations" / "img1.xml"
    xml.write_text(_voc_xml([("car", (11, 6, 30, 20), 0), ("person", (1, 1, 5, 9), 1)]))
    ds = create_dataset("rtts", "all", root=str(tmp_path))
    _, t = ds[0]
    assert t["boxes"].tolist() == [[10, 5, 30, 20], [0, 0, 5, 9]]
    assert t["labels"].tolist() == [1, 0] and t["iscrowd"].tolist() == [0, 1]
    xml.write_text(_voc_xml([("truck", (11, 6, 30, 20), 0)]))
    with pytest.raises(AnnotationError, match="img1.xml: object 0: object class 'truck'"):
        create_dataset("rtts", "all", root=str(tmp_path))


def test_exdark_text_annotations(tmp_path):
    (tmp_path / "ExDark" / "Cup").mkdir(parents=True)
    (tmp_path / "ExDark_Annno" / "Cup").mkdir(parents=True)
    Image.fromarray(np.zeros((40, 50, 3), np.uint8)).save(tmp_path / "ExDark" / "Cup" / "2015_1.png")
    txt = tmp_path / "ExDark_Annno" / "Cup" / "2015_1.png.txt"
    txt.write_text("% bbGt version=3\nCup 3 4 10 12 0 0 0 0 0 0 0\nPeople 0 0 5 5 0 0 0 0 0 0 0\n")
    ds = create_dataset("exdark", "all", root=str(tmp_path))
    _, t = ds[0]
    assert ds.classes[t["labels"][0]] == "Cup" and t["boxes"][0].tolist() == [3, 4, 13, 16]
    txt.write_text("% bbGt version=3\nCup 45 4 10 12 0 0 0 0 0 0 0\n")
    with pytest.raises(AnnotationError, match="2015_1.png.txt"):
        create_dataset("exdark", "all", root=str(tmp_path))
