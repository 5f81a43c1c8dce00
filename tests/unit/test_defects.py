"""Persistent lens-defect tracker on clips the tests make (true overlay masks from inject)."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from camheald.capture import inject
from camheald.capture.demo import DemoSource
from camheald.service.defects import DefectConfig, DefectTracker

W, H = 640, 360
FPS = 10.0


# ---------------------------------------------------------------- clips (shared by other tests)
def texture(h: int, w: int, seed: int) -> np.ndarray:
    """A textured RGB scene (multi-scale value noise), HxWx3 uint8."""
    rng = np.random.default_rng(seed)
    img = np.zeros((h, w, 3), np.float32)
    for cells, amp in ((6, 50.0), (24, 30.0), (96, 20.0)):
        small = rng.normal(0, 1, (max(2, h * cells // w), cells, 3)).astype(np.float32)
        img += amp * cv2.resize(small, (w, h), interpolation=cv2.INTER_CUBIC)
    return np.clip(img + 120, 0, 255).astype(np.uint8)


def panning(n: int, w: int = W, h: int = H, speed: float = 6.0, seed: int = 0
            ) -> list[np.ndarray]:
    """A camera panning over a textured scene at ``speed`` px/frame (moving camera)."""
    pano = texture(h, w + int(speed * n) + 8, seed)
    return [np.ascontiguousarray(pano[:, int(i * speed):int(i * speed) + w]) for i in range(n)]


def busy_static(n: int, w: int = W, h: int = H, seed: int = 0, gain: float = 1.0,
                start: int = 0) -> list[np.ndarray]:
    """A fixed camera over a static scene with traffic passing over all of it."""
    rng = np.random.default_rng(seed)
    bg = texture(h, w, seed + 100).astype(np.float32)
    grain = rng.normal(0, 18, (h, w, 3)).astype(np.float32)
    colours = rng.uniform(20, 235, (64, 3)).astype(np.float32)
    lanes = [(y, h // 5, rng.uniform(0.03, 0.06) * w * rng.choice([-1, 1]), rng.uniform(0, w))
             for y in range(-h // 12, h, h // 7)]
    out = []
    for i in range(start, start + n):
        f = bg.copy()
        for j, (y, lh, v, x0) in enumerate(lanes):
            y0, y1 = max(0, y), min(h, y + lh)
            for k in range(3):  # three vehicles per lane, a new colour on every pass
                pos = x0 + v * i + k * w * 0.55
                lap = int(pos // (1.6 * w))
                x = int(pos % (1.6 * w) - 0.3 * w)
                xa, xb = max(0, x), min(w, x + w // 3)
                if xb > xa and y1 > y0:
                    f[y0:y1, xa:xb] = colours[(j * 7 + k * 3 + lap * 11) % 64] + grain[y0:y1, xa:xb]
        out.append(np.clip(f * gain, 0, 255).astype(np.uint8))
    return out


def feed(tracker: DefectTracker, frames, defect=None, t0: float = 1000.0, start: int = 0,
         mask_fn=None) -> list:
    """Run frames (optionally through a lens defect) at FPS; return all events."""
    events = []
    for i, f in enumerate(frames):
        if defect is not None:
            f = defect.apply(f)
        events += tracker.update(f, mask_fn(f) if mask_fn else None, t0 + (start + i) / FPS)
    return events


def iou(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a > 127, b > 127
    union = int((a | b).sum())
    return int((a & b).sum()) / union if union else 1.0


# ---------------------------------------------------------------- finding defects
@pytest.mark.parametrize("camera", ["moving", "static"])
@pytest.mark.parametrize("kind", ["crack", "dirt"])
def test_mask_matches_true_overlay(camera: str, kind: str) -> None:
    # A moving camera gives evidence behind every defect pixel at once: 30 frames (3 s). A
    # fixed camera only where traffic passes through the defect, and its cue is held to more
    # evidence (a post in front of traffic looks the same for a while; a gap in the traffic
    # lasts a moment, a lens defect stays: a track must last confirm_fixed_s, 2.5 s): 60
    # frames (6 s; the first report comes after 3.8-4.9 s).
    n = 30 if camera == "moving" else 60
    frames = panning(n) if camera == "moving" else busy_static(n)
    scores = []
    for seed in (1, 2, 3):
        defect = inject.crack(W, H, seed) if kind == "crack" else inject.dirt(W, H, seed)
        tr = DefectTracker()
        events = feed(tr, frames, defect)
        scores.append(iou(tr.mask_at(W, H), defect.mask))
        found = tr.defects()
        assert found and all(d.kind == kind for d in found)
        announced = {e.defect.id: e.defect.kind for e in events if e.kind == "detected"}
        assert set(announced.values()) == {kind}
        assert all(d.id in announced for d in found)
        for d in found:
            x, y, w, h = d.bbox
            assert defect.mask[y:y + h, x:x + w].any()  # each box sits on the true defect
            assert 0 <= d.first_frame < n and 1000.0 <= d.since < 1000.0 + n / FPS
            assert 0.0 < d.confidence <= 1.0
        assert tr.mask().shape == (tr.work_size[1], tr.work_size[0])
        assert tr.state == "ok"
    assert min(scores) >= 0.6 and float(np.mean(scores)) >= 0.7, f"{camera} {kind}: {scores}"


def test_demo_scene_crack_with_moving_camera() -> None:
    src = DemoSource(width=W, height=H)
    src.open()
    defect = inject.crack(W, H)
    tr = DefectTracker()
    feed(tr, [src.render(8.0 + i / FPS) for i in range(30)], defect)
    assert iou(tr.mask_at(W, H), defect.mask) >= 0.6
    assert {d.kind for d in tr.defects()} == {"crack"}



def test_a_crack_keeps_its_kind_and_shape_when_scene_darkness_grows_onto_it() -> None:
    # Pixels grown from a crack's votes into an adjacent dark, featureless patch of the
    # scene (a shadowed gap in a building, seen in a pan over a real photo) made the piece
    # thick on average: it was called dirt, widened by the blob rim, its mask three times
    # the crack's. Judged by its thin majority that voted thin by itself, it stays a crack
    # and keeps only the thin part of what grew onto it.
    tr = DefectTracker()
    tr.update(texture(H, W, 1), None, 1000.0)  # sets the working size
    ww, wh = tr.work_size
    crack = np.zeros((wh, ww), np.uint8)
    cv2.line(crack, (ww // 5, wh // 2), (ww // 2, wh // 2 + wh // 10), 1, 2)
    blob = np.zeros_like(crack)
    cv2.circle(blob, (ww // 2 + 6, wh // 2 + wh // 10), 7, 1, -1)
    tr._on = crack > 0
    tr._grown = (crack | blob) > 0
    tr._p = np.where(tr._on, 1.0, 0.0).astype(np.float32)
    tr._mean = np.where(tr._grown, 30.0, 120.0).astype(np.float32)
    tr._components(1000.1, 1)
    (track,) = tr._tracks.values()
    assert track.kind == "crack"
    covered = np.zeros_like(crack)
    for x0, y0, comp in (pc.mask for pc in track.pieces):
        covered[y0:y0 + comp.shape[0], x0:x0 + comp.shape[1]] |= comp
    assert covered[crack > 0].all()  # every voted pixel kept
    assert covered.sum() <= 1.3 * crack.sum()  # the blob's thick part dropped

def test_detector_mask_is_used_when_the_scene_never_moves() -> None:
    still = [texture(H, W, 5)] * 30  # no evidence at all from time
    defect = inject.dirt(W, H, 3)
    coarse = cv2.resize(defect.mask.astype(np.float32) / 255, (32, 32),
                        interpolation=cv2.INTER_AREA)
    without, with_mask = DefectTracker(), DefectTracker()
    feed(without, still, defect)
    feed(with_mask, still, defect, mask_fn=lambda f: coarse)
    assert without.defects() == []
    assert iou(with_mask.mask_at(W, H), defect.mask) >= 0.4


# ---------------------------------------------------------------- no false alarms
@pytest.mark.parametrize("clip", ["pan", "static", "demo", "dim", "lighting", "passing"])
def test_no_report_on_clean_clips(clip: str) -> None:
    n = 60
    if clip == "pan":
        frames = panning(n)
    elif clip == "static":
        frames = busy_static(n)
    elif clip == "demo":
        src = DemoSource(width=W, height=H)
        src.open()
        frames = [src.render(8.0 + i / FPS) for i in range(n)]
    elif clip == "dim":  # a dim room: everything at a quarter of the light
        frames = busy_static(n, gain=0.25)
    elif clip == "lighting":  # lights dim abruptly, then come back
        frames = [np.clip(f * (0.5 if 20 <= i < 45 else 1.0), 0, 255).astype(np.uint8)
                  for i, f in enumerate(busy_static(n))]
    else:  # a large dark truck passes across most of the view in two seconds
        frames = busy_static(n)
        for i in range(20, 40):
            x = int((i - 20) / 20 * 1.6 * W) - int(0.6 * W)
            xa, xb = max(0, x), min(W, x + int(0.6 * W))
            if xb > xa:
                frames[i][int(0.1 * H):, xa:xb] = (35, 38, 40)
    tr = DefectTracker()
    events = feed(tr, frames)
    assert tr.defects() == []
    assert not [e for e in events if e.kind in ("detected", "state")]
    assert tr.mask().max() == 0


# ---------------------------------------------------------------- clearing and states
def test_clears_when_the_lens_is_cleaned() -> None:
    frames = panning(110)
    defect = inject.crack(W, H, 1)
    tr = DefectTracker()
    feed(tr, frames[:40], defect)
    assert tr.defects()
    events = feed(tr, frames[40:], start=40)
    cleared = [e for e in events if e.kind == "cleared"]
    assert cleared and cleared[0].defect.kind == "crack"
    assert tr.defects() == [] and tr.mask().max() == 0


def test_covered_and_uncovered() -> None:
    w, h = 320, 180
    scene = busy_static(60, w, h)
    rng = np.random.default_rng(0)
    hand = [np.clip(22 + rng.normal(0, 1.5, (h, w, 3)), 0, 255).astype(np.uint8)
            for _ in range(40)]
    tr = DefectTracker()
    events = feed(tr, scene[:20]) + feed(tr, hand, start=20) + feed(tr, scene[20:], start=60)
    states = [e.state for e in events if e.kind == "state"]
    assert states == ["covered", "ok"]
    covered_at = next(e.wall_time for e in events if e.state == "covered")
    assert 1002.0 + 1.9 <= covered_at <= 1002.0 + 3.0  # after covered_s, not at once


def test_covered_reports_a_whole_frame_defect() -> None:
    tr = DefectTracker()
    feed(tr, [np.full((120, 160, 3), 15, np.uint8)] * 40)
    assert tr.state == "covered"
    (d,) = tr.defects()
    assert d.kind == "covered" and d.bbox == (0, 0, 160, 120)
    assert tr.mask_at(160, 120).min() == 255


def test_moved_when_the_view_changes_and_stays() -> None:
    w, h = 320, 180

    def view(seed: int, n: int) -> list[np.ndarray]:  # a quiet street: one walker
        bg = texture(h, w, seed)
        out = []
        for i in range(n):
            f = bg.copy()
            x = (i * 4) % w
            f[100:140, x:x + 12] = (200, 60, 60)
            out.append(f)
        return out

    view_a, view_b = view(1, 60), view(2, 120)
    tr = DefectTracker(DefectConfig(moved_latch_s=4.0))
    events = feed(tr, view_a) + feed(tr, view_b, start=60)
    states = [(e.state, round(e.wall_time - 1000.0, 1)) for e in events if e.kind == "state"]
    assert [s for s, _ in states] == ["moved", "ok"]
    assert 6.0 + 4.9 <= states[0][1] <= 6.0 + 6.5  # after moved_s of the new view
    assert tr.defects() == []


def test_rejects_bad_frames_and_restarts_on_a_new_size() -> None:
    tr = DefectTracker()
    with pytest.raises(ValueError):
        tr.update(np.zeros((10, 10), np.uint8), None, 0.0)
    with pytest.raises(ValueError):
        tr.update(np.zeros((10, 10, 3), np.float32), None, 0.0)
    assert tr.mask_at(64, 48).shape == (48, 64)
    tr.update(np.zeros((48, 64, 3), np.uint8), None, 0.0)
    tr.update(np.zeros((96, 128, 3), np.uint8), None, 0.1)
    assert tr.mask_at(128, 96).shape == (96, 128)


# ---------------------------------------------------------------- temporal evidence, not darkness
def dark_blob(frame: np.ndarray, cx: float, cy: float, r: float = 22.0) -> np.ndarray:
    """``frame`` with a soft dark blob of scene content (dirt-coloured) centred at (cx, cy)."""
    h, w = frame.shape[:2]
    alpha = np.zeros((h, w), np.float32)
    cv2.ellipse(alpha, (int(cx), int(cy)), (int(r), int(r * 0.8)), 0.0, 0, 360, 0.9, -1)
    alpha = cv2.GaussianBlur(alpha, (0, 0), 4.0)[..., None]
    return np.clip(frame * (1 - alpha) + alpha * np.float32((45, 38, 30)), 0, 255).astype(np.uint8)


@pytest.mark.parametrize("camera", ["fixed", "panning"])
def test_a_dark_object_moving_through_the_view_is_not_a_defect(camera: str) -> None:
    # A dark, dirt-coloured thing in the scene that moves on its own (2.5 px per frame right
    # and down; the panning camera moves 6 px per frame the other way): it darkens the
    # pixels it covers as dirt would, but it does not stay in place in the image.
    frames = busy_static(80) if camera == "fixed" else panning(80)
    frames = [dark_blob(f, 60 + 5 * i, 60 + 2.5 * i) for i, f in enumerate(frames)]
    tr = DefectTracker()
    events = feed(tr, frames)
    assert tr.defects() == [] and not [e for e in events if e.kind == "detected"]
    assert tr.mask().max() == 0


def stamped(frames: list[np.ndarray], scale: float, thick: int,
            colour: tuple[int, int, int] = (255, 255, 255)) -> list[np.ndarray]:
    """``frames`` with a burned-in camera name and clock (its minutes change every 10
    frames) at a fixed place in the image: an on-screen display."""
    out = []
    for i, f in enumerate(frames):
        f = f.copy()
        cv2.putText(f, f"CAM 03 2026-12-03 20:{i // 10 % 60:02d}", (20, 50),
                    cv2.FONT_HERSHEY_SIMPLEX, scale, colour, thick, cv2.LINE_AA)
        out.append(f)
    return out


@pytest.mark.parametrize("scale,thick,speed,colour", [
    (1.0, 2, 6.0, (255, 255, 255)), (1.4, 3, 6.0, (255, 255, 255)),
    (1.4, 3, 3.0, (255, 255, 255)), (1.8, 4, 6.0, (255, 255, 255)),
    (1.0, 2, 6.0, (255, 255, 0)), (1.4, 3, 3.0, (255, 255, 0))])
def test_burned_in_text_on_a_panning_camera_is_not_a_defect(scale, thick, speed, colour) -> None:
    # Text that stays put in the image while the camera pans is what a lens defect does, but
    # bright: before the on-screen-display zone its ghost, shifted onto the scene beside it
    # as if it were scene, made that scene look dark: 1-6 "crack"/"dirt" reports along the
    # text in each of these clips. Dirt elsewhere is still found.
    frames = stamped(panning(90, speed=speed), scale, thick, colour)
    tr = DefectTracker()
    events = feed(tr, frames)
    assert not [e for e in events if e.kind == "detected"] and tr.defects() == []
    defect = inject.dirt(W, H, 1)
    tr = DefectTracker()
    feed(tr, frames[:30], defect)
    assert iou(tr.mask_at(W, H), defect.mask) >= 0.6  # measured 0.66-0.69


def walker(frame: np.ndarray, x: float, y: float, phase: float, cloth: np.ndarray
           ) -> np.ndarray:
    """``frame`` with a dark, textured walker at (x, y): body, legs and arms swinging."""
    h, w = frame.shape[:2]
    alpha = np.zeros((h, w), np.float32)
    cv2.ellipse(alpha, (int(x), int(y)), (12, 26), 0.0, 0, 360, 1.0, -1)
    for s in (1, -1):
        a = s * 0.6 * np.sin(phase)
        cv2.line(alpha, (int(x), int(y + 20)),
                 (int(x + 36 * np.sin(a)), int(y + 20 + 36 * np.cos(a))), 1.0, 8)
        cv2.line(alpha, (int(x), int(y - 14)),
                 (int(x - 28 * np.sin(a)), int(y - 14 + 28 * np.cos(a))), 1.0, 6)
    alpha = cv2.GaussianBlur(alpha, (0, 0), 1.2)[..., None]
    layer = cloth[:, int(x) % 40:int(x) % 40 + w]
    return np.clip(frame * (1 - alpha) + alpha * layer, 0, 255).astype(np.uint8)


@pytest.mark.parametrize("drift", [1.0, 1.5])
def test_a_walker_the_pan_follows_is_not_a_defect(drift: float) -> None:
    # The camera pans 6 px per frame and a walker keeps pace with it (drifting ``drift`` px
    # per frame in the image), over a floor of moderate texture: dark, nearly in place, for
    # 9 s. Its limbs and its drift change it inside as much as the floor changes around it;
    # a lens defect hides part of the change behind it. (vtest's panning version had three
    # such reports before this cue; a rigid object matching the pan exactly stays
    # indistinguishable from dirt: docs/defects.md.)
    cloth = texture(H, W + 40, 5).astype(np.float32) * 0.5
    frames = [np.clip((f.astype(np.float32) - 120) * 0.6 + 150, 0, 255).astype(np.uint8)
              for f in panning(90)]
    frames = [walker(f, 300 + drift * i, 160, 1.1 * i, cloth) for i, f in enumerate(frames)]
    tr = DefectTracker()
    events = feed(tr, frames)
    assert not [e for e in events if e.kind == "detected"] and tr.defects() == []


@pytest.mark.parametrize("blip", [False, True])
def test_a_fixed_camera_over_a_road_raises_no_alarm(blip: bool) -> None:
    # The demo scene held still (320x180, 15 updates a second, 60 s): cars pass along a dark
    # road and now and then leave a gap in its activity for a moment, which looks like a
    # still pixel traffic passes through. Before a fixed-camera track had to last
    # ``confirm_fixed_s``, this view gave 4 short-lived reports (each cleared in 0.7-1.9 s).
    # ``blip``: the detector's mask says "obstructed" over the whole view for 3 updates (an
    # appearance vote exempts a track from the wait only when it lasts): one report before.
    src = DemoSource(width=320, height=180, pan=False, pan_at=0.1)
    src.open()
    tr = DefectTracker()
    events = []
    for i in range(900):
        mask = np.full((32, 32), 0.6 if 60 <= i < 63 else 0.3, np.float32) if blip else None
        events += tr.update(src.render(8.0 + i / 15), mask, 1000.0 + i / 15)
    assert not [e for e in events if e.kind == "detected"]


def test_a_pan_slowing_to_turn_raises_no_alarm() -> None:
    # The demo's pan slows to a stop and turns about 13 s in: the tracker counts the view as
    # fixed for a while, votes on the road, and when the pan sped up again 6 such stale votes
    # were grown over the dark road into a reported "defect" of 464 pixels.
    src = DemoSource(width=320, height=180)
    src.open()
    tr = DefectTracker()
    events = [e for i in range(300) for e in tr.update(src.render(8.0 + i / 15), None,
                                                       1000.0 + i / 15)]
    assert not [e for e in events if e.kind == "detected"]


def test_a_still_scene_is_not_evidence() -> None:
    # Nothing moves (sensor noise only), and the scene holds a dark blob: temporal evidence
    # can say nothing about it, so nothing is reported however long it lasts.
    rng = np.random.default_rng(1)
    scene = dark_blob(texture(H, W, 7), 300, 180).astype(np.float32)
    frames = [np.clip(scene + rng.normal(0, 3, scene.shape), 0, 255).astype(np.uint8)
              for _ in range(90)]
    tr = DefectTracker()
    events = feed(tr, frames)
    assert tr.defects() == [] and events == [] and tr.mask().max() == 0


def test_swaying_leaves_around_a_dark_gap_are_not_a_defect() -> None:
    # The top half sways (the whole texture jitters by up to 2 px every frame) around dark
    # gaps that never move; traffic passes in the bottom half. Nothing passes *through* the
    # gaps, so nothing is reported.
    rng = np.random.default_rng(2)
    leaves = texture(H // 2 + 8, W + 8, 11)
    gaps = dark_blob(np.zeros((H // 2, W, 3), np.uint8) + 255, 120, 90, 16)[..., :1] < 128
    gaps |= dark_blob(np.zeros((H // 2, W, 3), np.uint8) + 255, 420, 60, 12)[..., :1] < 128
    frames = []
    for f in busy_static(90):
        dx, dy = (int(v) for v in rng.integers(0, 5, 2))
        top = leaves[dy:dy + H // 2, dx:dx + W]
        f[:H // 2] = np.where(gaps, np.uint8(30), top)
        frames.append(f)
    tr = DefectTracker()
    events = feed(tr, frames)
    assert tr.defects() == [] and not [e for e in events if e.kind == "detected"]


def test_a_defect_that_appears_later_is_found_with_its_time() -> None:
    frames = panning(80)
    defect = inject.dirt(W, H, 2)
    tr = DefectTracker()
    events = feed(tr, frames[:30]) + feed(tr, frames[30:], defect, start=30)
    detected = [e for e in events if e.kind == "detected"]
    assert detected and all(e.defect.kind == "dirt" for e in detected)
    assert all(e.defect.first_frame >= 30 and e.defect.since >= 1003.0 for e in detected)
    assert min(e.wall_time for e in detected) < 1000.0 + 60 / FPS  # within 3 s of appearing
    assert iou(tr.mask_at(W, H), defect.mask) >= 0.6


def test_a_slow_pan_adds_up_to_evidence() -> None:
    # 1 px per frame at 640 px (half a pixel at the working resolution): each step is below
    # what a frame-to-frame measurement can confirm, the motion still adds up.
    frames = panning(45, speed=1.0)
    defect = inject.crack(W, H, 2)
    tr = DefectTracker()
    feed(tr, frames, defect)
    assert {d.kind for d in tr.defects()} == {"crack"}
    assert iou(tr.mask_at(W, H), defect.mask) >= 0.6


def test_cleaning_a_fixed_camera_clears_the_dirt() -> None:
    frames = busy_static(150)
    defect = inject.dirt(W, H, 1)
    tr = DefectTracker()
    feed(tr, frames[:70], defect)
    assert tr.defects()
    events = feed(tr, frames[70:], start=70)
    assert [e for e in events if e.kind == "cleared"]
    assert tr.defects() == [] and tr.mask().max() == 0


# ---------------------------------------------------------------- the lens-defect segmenter
def still_demo(n: int, t: float, seed: int = 1) -> list[np.ndarray]:
    """A fixed camera over the demo scene frozen at time ``t`` (sensor noise only): nothing
    moves, so time alone gives no evidence anywhere."""
    src = DemoSource(width=W, height=H)
    src.open()
    img = src.render(t).astype(np.int16)
    rng = np.random.default_rng(seed)
    return [np.clip(img + rng.integers(-3, 4, img.shape), 0, 255).astype(np.uint8)
            for _ in range(n)]


@pytest.fixture(scope="module")
def lens():
    from camheald.vision.lens import LensSegmenter

    return LensSegmenter.load()  # the shipped network (models/LENS_CARD.md)


def test_the_lens_segmenter_finds_dirt_on_a_still_view_within_30_frames(lens) -> None:
    frames = still_demo(30, 8.0)
    scores = []
    for seed in (1, 2, 3):
        defect = inject.dirt(W, H, seed)
        with_lens, alone = DefectTracker(lens=lens), DefectTracker()
        feed(with_lens, frames, defect)
        feed(alone, frames, defect)
        assert not alone.defects()  # time alone: no evidence where nothing moves
        found = with_lens.defects()
        assert found and all(d.kind == "dirt" for d in found)
        for d in found:
            x, y, w, h = d.bbox
            assert defect.mask[y:y + h, x:x + w].any()
        scores.append(iou(with_lens.mask_at(W, H), defect.mask))
    # measured 0.65 / 0.71 / 0.63 (the shipped network and sidecar, 2026-12-03)
    assert min(scores) >= 0.5 and float(np.mean(scores)) >= 0.6, scores


@pytest.mark.parametrize("t", [8.0, 20.0])
def test_the_lens_segmenter_raises_no_alarm_on_a_clean_still_view(lens, t: float) -> None:
    tr = DefectTracker(lens=lens)
    events = feed(tr, still_demo(60, t))
    assert not [e for e in events if e.kind == "detected"] and not tr.defects()


def test_dirt_found_by_the_lens_segmenter_clears_when_the_lens_is_cleaned(lens) -> None:
    frames = still_demo(100, 8.0)
    defect = inject.dirt(W, H, 2)
    tr = DefectTracker(lens=lens)
    feed(tr, frames[:30], defect)
    found = len(tr.defects())
    assert found >= 3
    events = feed(tr, frames[30:], t0=1000.0, start=30)  # cleaned: the same view, no dirt
    cleared = [e for e in events if e.kind == "cleared"]
    # measured: all 5 cleared within 45 updates (one is held where the clean scene itself
    # looks half like dirt to the network: neither vote comes there; seen at on = 0.95)
    assert len(cleared) >= found - 1 and len(tr.defects()) <= 1


def test_the_lens_segmenter_is_not_asked_while_the_camera_moves(lens) -> None:
    calls = []

    class Counting:
        on, off, max_side = lens.on, lens.off, lens.max_side

        def probability(self, rgb):
            calls.append(rgb.shape)
            return lens.probability(rgb)

    tr = DefectTracker(lens=Counting())
    feed(tr, panning(20))
    assert not calls
    feed(tr, still_demo(20, 8.0), start=20)
    # once the camera counts as still (2 px over the last 8 updates), on every second update
    assert 2 <= len(calls) <= 10 and calls[0] == (tr.work_size[1], tr.work_size[0], 3)


def test_a_new_view_restarts_the_lens_segmenters_average(lens) -> None:
    tr = DefectTracker(DefectConfig(moved_s=1.0), lens=lens)
    feed(tr, still_demo(20, 8.0), inject.dirt(W, H, 1))
    assert tr._lens_n > 0 and tr._lens_voted.any()
    tr._restart_view()  # what a "moved" view change does
    assert tr._lens_p is None and tr._lens_n == 0 and not tr._lens_voted.any()
