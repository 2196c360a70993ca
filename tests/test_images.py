"""vecexplore.io.images: every image kind a dataset throws at us, decoded or refused with a reason."""

from __future__ import annotations

import hashlib
import io
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from PIL import Image

from vecexplore.errors import InputError
from vecexplore.io import images as img_mod
from vecexplore.io.images import BACKGROUND, DecodeError, file_digest, make_thumbnail, open_rgb

RNG_SEED = 20240611


def _rgb_array(h=24, w=32, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def _save(tmp_path, name, im, **kw):
    path = tmp_path / name
    im.save(path, **kw)
    return path


# -- modes: differential against Pillow where Pillow's conversion is the right one ------------


@pytest.mark.parametrize(
    ("name", "make"),
    [
        ("rgb.png", lambda a: Image.fromarray(a)),
        ("gray.png", lambda a: Image.fromarray(a[..., 0])),
        ("bilevel.png", lambda a: Image.fromarray(a[..., 0] > 127)),
        ("palette.png", lambda a: Image.fromarray(a).quantize(16)),
        ("palette.gif", lambda a: Image.fromarray(a).quantize(7)),
        ("cmyk.tif", lambda a: Image.fromarray(a).convert("CMYK")),
        ("cmyk.jpg", lambda a: Image.fromarray(a).convert("CMYK")),
        ("ycbcr.jpg", lambda a: Image.fromarray(a)),
        ("gray.jpg", lambda a: Image.fromarray(a[..., 0])),
        ("rgb.webp", lambda a: Image.fromarray(a)),
        ("rgb.bmp", lambda a: Image.fromarray(a)),
    ],
)
def test_opaque_modes_match_pillow_rgb_conversion(tmp_path, name, make):
    path = _save(tmp_path, name, make(_rgb_array(seed=len(name))))
    got = open_rgb(path)
    with Image.open(path) as ref_im:
        ref = np.asarray(ref_im.convert("RGB"))
    assert got.mode == "RGB"
    assert got.info["original_size"] == got.size == (32, 24)
    np.testing.assert_array_equal(np.asarray(got), ref)


@pytest.mark.parametrize(
    "values",
    [
        [0, 1, 255, 256, 257, 32767, 32768, 65280, 65534, 65535],
        list(np.random.default_rng(RNG_SEED).integers(0, 65536, 50)),
    ],
)
def test_16_bit_grayscale_is_scaled_not_clipped(tmp_path, values):
    arr = np.asarray(values, dtype=np.uint16).reshape(1, -1)
    path = _save(tmp_path, "g16.png", Image.fromarray(arr))
    with Image.open(path) as raw:
        assert raw.mode.startswith("I")  # Pillow reads 16-bit PNG as I;16 (or I)
    got = np.asarray(open_rgb(path))
    expected = np.floor(arr.astype(np.float64) * 255 / 65535 + 0.5).astype(np.uint8)
    for c in range(3):
        np.testing.assert_array_equal(got[..., c], expected)
    assert got.max() == (255 if arr.max() == 65535 else got.max())


@pytest.mark.parametrize(
    ("mode", "data", "expected"),
    [
        # 32-bit int inside the 16-bit range: read as 16-bit
        ("I", [0, 257, 65535], [0, 1, 255]),
        # outside it: stretched min → 0, max → 255
        ("I", [-100, 0, 100], [0, 128, 255]),
        # float in [0, 1]: × 255
        ("F", [0.0, 0.5, 1.0], [0, 128, 255]),
        # float outside [0, 1]: stretched
        ("F", [-2.0, 0.0, 2.0], [0, 128, 255]),
        # constant image: no division by zero
        ("F", [7.0, 7.0, 7.0], [0, 0, 0]),
    ],
)
def test_wide_modes(tmp_path, mode, data, expected):
    dtype = np.int32 if mode == "I" else np.float32
    im = Image.fromarray(np.asarray([data], dtype=dtype), mode=mode)
    path = _save(tmp_path, "wide.tif", im)
    got = np.asarray(open_rgb(path))
    np.testing.assert_array_equal(got[0, :, 0], expected)
    np.testing.assert_array_equal(got[..., 0], got[..., 2])


def _alpha_expect(rgb, alpha):
    a = alpha[..., None].astype(np.float64) / 255
    return rgb * a + np.asarray(BACKGROUND) * (1 - a)


@pytest.mark.parametrize("mode", ["RGBA", "LA"])
def test_alpha_is_composited_on_grey(tmp_path, mode):
    rgb = _rgb_array(2, 3, seed=3)
    if mode == "LA":
        rgb = np.repeat(rgb[..., :1], 3, axis=2)
    alpha = np.asarray([[0, 128, 255], [255, 64, 0]], dtype=np.uint8)
    chans = rgb if mode == "RGBA" else rgb[..., :1]
    im = Image.fromarray(np.concatenate([chans, alpha[..., None]], axis=2), mode=mode)
    got = np.asarray(open_rgb(_save(tmp_path, f"{mode}.png", im))).astype(np.float64)
    np.testing.assert_allclose(got, _alpha_expect(rgb, alpha), atol=1.0)
    np.testing.assert_array_equal(got[0, 0], BACKGROUND)  # fully transparent → background


def test_palette_with_transparent_index(tmp_path):
    p = Image.new("P", (3, 1))
    p.putpalette([255, 0, 0, 0, 255, 0, 0, 0, 255] + [0] * (256 * 3 - 9))
    p.putdata([0, 1, 2])
    path = _save(tmp_path, "ptrns.png", p, transparency=1)
    got = np.asarray(open_rgb(path))
    np.testing.assert_array_equal(got[0], [[255, 0, 0], BACKGROUND, [0, 0, 255]])


# -- EXIF orientation: all eight, exactly (PNG eXIf), and the common JPEG case ---------------

_ORIENT = {
    1: lambda a: a,
    2: lambda a: a[:, ::-1],
    3: lambda a: a[::-1, ::-1],
    4: lambda a: a[::-1],
    5: lambda a: a.transpose(1, 0, 2),
    6: lambda a: np.rot90(a, k=-1),
    7: lambda a: a[::-1, ::-1].transpose(1, 0, 2),
    8: lambda a: np.rot90(a, k=1),
}


@pytest.mark.parametrize("orientation", sorted(_ORIENT))
def test_exif_orientation_is_applied(tmp_path, orientation):
    arr = _rgb_array(5, 9, seed=orientation)
    exif = Image.Exif()
    exif[0x0112] = orientation
    got = open_rgb(_save(tmp_path, "o.png", Image.fromarray(arr), exif=exif))
    expected = _ORIENT[orientation](arr)
    np.testing.assert_array_equal(np.asarray(got), expected)
    assert got.info["original_size"] == got.size == (expected.shape[1], expected.shape[0])


def test_exif_rotated_jpeg(tmp_path):
    arr = np.zeros((40, 80, 3), np.uint8)
    arr[:16, :16] = (255, 0, 0)  # red block at the stored top-left
    exif = Image.Exif()
    exif[0x0112] = 6  # camera held rotated: show turned 90° clockwise
    got = open_rgb(_save(tmp_path, "rot.jpg", Image.fromarray(arr), exif=exif, quality=95))
    assert got.size == (40, 80)  # width and height swapped
    a = np.asarray(got).astype(int)
    assert a[:16, -16:, 0].mean() > 200 and a[:16, -16:, 1:].mean() < 40  # now top-right
    assert a[:16, :16].mean() < 40


# -- refused files: a short reason, the path in the message -----------------------------------


def _jpeg_bytes():
    buf = io.BytesIO()
    Image.fromarray(_rgb_array(240, 320)).save(buf, format="JPEG", quality=90)
    return buf.getvalue()


def _png_bytes():
    buf = io.BytesIO()
    Image.fromarray(_rgb_array(240, 320)).save(buf, format="PNG")
    return buf.getvalue()


@pytest.mark.parametrize(
    ("name", "content", "reason"),
    [
        ("empty.jpg", b"", "zero-byte file"),
        ("text.jpg", b"this is not an image at all\n", "not an image"),
        ("cut.jpg", _jpeg_bytes()[: len(_jpeg_bytes()) * 3 // 5], "truncated image data"),
        ("cut-early.jpg", _jpeg_bytes()[:700], "truncated image data"),
        ("cut.png", _png_bytes()[: len(_png_bytes()) // 2], "truncated image data"),
        ("header-only.png", _png_bytes()[:40], "truncated"),
    ],
)
def test_undecodable_files_raise_decode_error(tmp_path, name, content, reason):
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(DecodeError) as err:
        open_rgb(path)
    assert reason in err.value.reason
    assert str(path) in str(err.value)
    assert isinstance(err.value, InputError)


def test_missing_file_and_directory(tmp_path):
    with pytest.raises(DecodeError, match="file not found"):
        open_rgb(tmp_path / "nope.jpg")
    with pytest.raises(DecodeError, match="directory"):
        open_rgb(tmp_path)


def test_truncated_images_stay_errors_globally():
    from PIL import ImageFile

    assert ImageFile.LOAD_TRUNCATED_IMAGES is False


def test_decompression_bomb_is_refused(tmp_path, monkeypatch):
    path = _save(tmp_path, "bomb.png", Image.new("L", (100, 100)))
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)  # 10,000 px > 2 × limit
    with pytest.raises(DecodeError, match="decompression bomb"):
        open_rgb(path)


def test_huge_non_jpeg_is_refused_without_decoding(tmp_path):
    path = _save(tmp_path, "huge.png", Image.new("1", (9000, 8000)))  # 72 Mpx > 67 Mpx
    with pytest.raises(DecodeError, match="too large"):
        open_rgb(path)


def test_large_image_above_policy_is_reduced(tmp_path):
    path = _save(tmp_path, "large.png", Image.new("L", (6000, 3000), 77))  # 18 Mpx: decoded, reduced
    got = open_rgb(path)
    assert got.size[0] * got.size[1] <= img_mod.MAX_DECODE_PIXELS
    assert abs(got.size[0] / got.size[1] - 2.0) < 0.01
    assert got.info["original_size"] == (6000, 3000)
    np.testing.assert_array_equal(np.unique(np.asarray(got)), [77])


def test_very_large_jpeg_is_decoded_at_reduced_scale_with_bounded_memory(tmp_path):
    path = tmp_path / "huge.jpg"
    big = Image.new("L", (12000, 12000), 90)
    big.paste(200, (0, 0, 6000, 6000))  # bright top-left quadrant
    big.save(path, quality=75)
    del big
    script = textwrap.dedent(
        f"""
        import resource, numpy as np
        from vecexplore.io.images import open_rgb
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        im = open_rgb({str(path)!r})
        grown = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before
        a = np.asarray(im)
        print(im.size[0], im.size[1], *im.info["original_size"], grown // 1024, int(a[10, 10, 0]), int(a[-10, -10, 0]))
        """
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True).stdout
    w, h, ow, oh, grown_mb, top_left, bottom_right = map(int, out.split())
    assert (ow, oh) == (12000, 12000)
    assert w * h <= img_mod.MAX_DECODE_PIXELS and w == h
    # A full decode would need 144 MB (L) + 432 MB (RGB); DCT reduction keeps it far below.
    assert grown_mb < 200, f"decoding grew RSS by {grown_mb} MB"
    assert abs(top_left - 200) <= 3 and abs(bottom_right - 90) <= 3


# -- files are not held open; frames; digests; thumbnails -------------------------------------


def _open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="needs /proc")
@pytest.mark.parametrize("kind", ["anim.gif", "frames.tif", "plain.png", "plain.jpg", "bad.jpg"])
def test_no_file_handle_is_left_open(tmp_path, kind):
    frames = [Image.fromarray(_rgb_array(seed=s)) for s in range(3)]
    path = tmp_path / kind
    if kind == "anim.gif":
        frames = [f.quantize(8) for f in frames]
    if kind in ("anim.gif", "frames.tif"):
        frames[0].save(path, save_all=True, append_images=frames[1:])
    elif kind == "bad.jpg":
        path.write_bytes(_jpeg_bytes()[:900])
    else:
        frames[0].save(path)
    ref = None
    if kind != "bad.jpg":
        with Image.open(path) as first_frame:
            ref = np.asarray(first_frame.convert("RGB"))
    before = _open_fds()
    try:
        got = open_rgb(path)
    except DecodeError:
        assert ref is None
        got = None
    assert _open_fds() == before
    if ref is not None:  # the first frame, usable after the file is gone
        path.unlink()
        np.testing.assert_array_equal(np.asarray(got), ref)


@pytest.mark.parametrize("size", [0, 1, 1023, 1024, 1025, 5000])
def test_file_digest_is_blake2b_160_of_content(tmp_path, size):
    data = np.random.default_rng(size).integers(0, 256, size, dtype=np.uint8).tobytes()
    path = tmp_path / "f.bin"
    path.write_bytes(data)
    assert file_digest(path, chunk_size=1024) == hashlib.blake2b(data, digest_size=20).hexdigest()


def test_file_digest_missing_file(tmp_path):
    with pytest.raises(InputError, match="cannot read"):
        file_digest(tmp_path / "missing.jpg")


@pytest.mark.parametrize(
    ("fmt", "magic"),
    [("JPEG", b"\xff\xd8"), ("PNG", b"\x89PNG"), ("WEBP", b"RIFF")],
)
def test_make_thumbnail(tmp_path, fmt, magic):
    exif = Image.Exif()
    exif[0x0112] = 6
    path = _save(tmp_path, "t.jpg", Image.fromarray(_rgb_array(300, 500)), exif=exif)
    data = make_thumbnail(path, 128, format=fmt)
    assert data.startswith(magic)
    with Image.open(io.BytesIO(data)) as thumb:
        assert thumb.size == (77, 128)  # rotated 300 × 500 → 500 tall, longer side 128


def test_make_thumbnail_never_upscales_and_reports_bad_images(tmp_path):
    path = _save(tmp_path, "small.png", Image.fromarray(_rgb_array(10, 20)))
    with Image.open(io.BytesIO(make_thumbnail(path, 256))) as thumb:
        assert thumb.size == (20, 10)
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"")
    with pytest.raises(DecodeError, match="zero-byte"):
        make_thumbnail(bad, 64)
    with pytest.raises(ValueError):
        make_thumbnail(path, 0)


@pytest.mark.parametrize(
    ("name", "hint", "expected"),
    [
        ("photo.jpg", 150, (200, 150)),  # 1/8 DCT scale
        ("photo.jpg", 151, (400, 300)),  # 1/8 would go below the hint: 1/4
        ("photo.jpg", 700, (1600, 1200)),  # 1/2 would give 600 < 700: full size
        ("photo.png", 150, (1600, 1200)),  # PNG cannot decode at reduced scale: untouched
    ],
)
def test_size_hint_decodes_large_jpeg_at_reduced_scale(tmp_path, name, hint, expected):
    path = _save(tmp_path, name, Image.fromarray(_rgb_array(1200, 1600)))
    got = open_rgb(path, size_hint=hint)
    assert got.size == expected and min(got.size) >= hint
    assert got.info["original_size"] == (1600, 1200)
