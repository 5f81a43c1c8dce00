"""One camera's capture path: source thread -> (decoupled) analysis -> correction -> publish."""

from __future__ import annotations

import ctypes
import logging
import os
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import cv2
import numpy as np

from camheald.capture.base import Source, SourceClosed, SourceEnded
from camheald.errors import NotReady
from camheald.service.defects import Defect, DefectEvent, DefectTracker
from camheald.service.frames import PublishedFrame
from camheald.service.health import HealthEvent, HealthTracker
from camheald.service.vision import VisionEngine
from camheald.vision import directional
from camheald.vision.correct import Correction
from camheald.vision.spec import too_small
from camheald.vision.types import Analysis

if TYPE_CHECKING:
    from camheald.service.store import SampleStore

logger = logging.getLogger(__name__)


#: nice increment of the analysis thread (detector + defect tracker, a few times a second):
#: when the cores are saturated, decoding and delivering frames go first and the analysis
#: runs a little later (measured: see docs/BENCHMARKS.md, "What changed")
ANALYSIS_NICE = 10
#: freeze detection looks at one frame per 40 ms at most (0.2 ms each at 720p)
THUMB_PERIOD_NS = 40_000_000

FrameSink = Callable[[PublishedFrame, PublishedFrame], None]
EventSink = Callable[["Camera", list[HealthEvent]], None]


@dataclass
class CameraStats:
    frames: int = 0
    fps: float = 0.0
    analyses: int = 0
    analyze_ms: float = 0.0
    correct_ms: float = 0.0  # moving average of one correction
    corrections: int = 0  # frames corrected (only those a consumer needed)
    correct_total_ms: float = 0.0  # time spent correcting them (means over any window)
    reconnects: int = 0
    dropped: int = 0  # captured but not processed (processing fell behind a live camera)
    source_errors: int = 0
    last_error: str = ""


class Camera:
    """Owns a Source and runs its capture path on two threads (capture, analysis).

    Nothing here touches the event loop: health events go to ``on_events`` (the owner
    re-posts them to its loop) and frames to the registered sinks.
    """

    def __init__(self, cam_id: str, source: Source, vision: VisionEngine,
                 analyze_fps: float = 5.0, correct: bool = True,
                 on_events: EventSink | None = None, store: SampleStore | None = None,
                 restore: bool = True) -> None:
        self.id = cam_id
        self.source = source
        self.vision = vision
        self.analyze_period = 1.0 / analyze_fps if analyze_fps > 0 else 0.0
        self.correct_enabled = correct
        self.restore_enabled = restore  # cheap denoise/sharpen when noise/blur is detected
        self.on_events = on_events
        self.store = store
        self.defects = DefectTracker()
        self._defects_lock = threading.Lock()  # not _lock: an update must not delay frames
        self.stats = CameraStats()
        self.health = HealthTracker()
        self._lock = threading.Lock()
        self.model_changed()
        self._sinks: list[FrameSink] = []
        self._raw: PublishedFrame | None = None
        self._corrected: PublishedFrame | None = None
        self._analysis: Analysis | None = None
        self._pending: PublishedFrame | None = None
        self._want_frame = False
        self._pending_ready = threading.Condition(threading.Lock())
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._new_frame = threading.Condition(self._lock)
        self._fps_window = (time.monotonic(), 0)
        self._thumb_ts = 0  # capture time of the last freeze thumbnail
        # why frames cannot be analysed ("" while they can): shown in the health report
        self._analysis_error = ""
        self._warned_sizes: set[tuple[int, int]] = set()  # logged once per frame size
        # capture -> process hand-off: decoding and correction run on two cores in parallel;
        # None follows the last frame of a source that ended (SourceEnded)
        self._queue: queue.Queue[tuple[np.ndarray, bool, int] | None] = queue.Queue(maxsize=2)
        # what the current analysis means for every frame until the next one (built once)
        self._plan: tuple[Analysis | None, tuple[bool, bool], dict[str, float],
                          Correction | None, tuple[str, ...],
                          tuple[tuple[str, float], ...]] = (None, (False, False), {}, None, (), ())

    # -- lifecycle -------------------------------------------------------------------------
    def start(self) -> None:
        for name, target in (("capture", self._capture_loop), ("process", self._process_loop),
                             ("analyze", self._analyze_loop)):
            t = threading.Thread(target=_named(f"{name}-{self.id}", target),
                                 name=f"{name}-{self.id}", daemon=True)
            t.start()
            self._threads.append(t)

    def stop(self, timeout: float = 3.0) -> None:
        self._stop.set()
        with self._pending_ready:
            self._pending_ready.notify_all()
        for t in self._threads:
            t.join(timeout)
        # A capture thread still inside read() (a stalled network camera) closes the source
        # itself when read() returns; closing it here at the same time is not safe.
        if not any(t.is_alive() and t.name.startswith("capture") for t in self._threads):
            self.source.close()
        # consumers and the owner's callback refer back to this camera (a stream hub holds
        # it): let go of them, so that a removed camera is freed without waiting for the
        # cycle collector
        with self._lock:
            self._sinks = []
        self.on_events = None

    # -- consumers ---------------------------------------------------------------------------
    def add_sink(self, sink: FrameSink) -> None:
        with self._lock:
            self._sinks = [*self._sinks, sink]

    def remove_sink(self, sink: FrameSink) -> None:
        with self._lock:
            # `!=`, not `is not`: each access to a bound method makes a new object
            self._sinks = [s for s in self._sinks if s != sink]

    def latest(self, corrected: bool = True) -> PublishedFrame | None:
        """The newest frame. Its pixels may be reused a few frames later: use snapshot()
        to keep them."""
        with self._lock:
            return self._corrected if corrected else self._raw

    def snapshot(self, corrected: bool = True) -> PublishedFrame | None:
        """The newest frame with private, final pixels (blocking: ~1 ms at 1080p for a copy,
        ~4 ms when the correction is applied)."""
        with self._lock:
            frame = self._corrected if corrected else self._raw
        if frame is None:
            return None
        # a source hands out a new array per frame, never reused: no lock needed to read it
        image = self.render(frame, np.empty(frame.pixels.shape, np.uint8))
        return PublishedFrame(image, frame.seq, frame.timestamp_ns, frame.corrected,
                              frame.scores, frame.actions)

    def render(self, frame: PublishedFrame, out: np.ndarray) -> np.ndarray:
        """Write a frame's final RGB pixels into ``out`` (HxWx3 uint8, C-contiguous, e.g. a
        ring slot): its pending correction applied (and the channels swapped on the way when
        the source gave BGR), or a copy. Times the correction into ``Stats.correct_ms``."""
        if not frame.pending:
            return frame.render(out)
        t0 = time.perf_counter()
        frame.render(out)
        ms = (time.perf_counter() - t0) * 1e3
        s = self.stats
        s.correct_ms = 0.9 * s.correct_ms + 0.1 * ms
        s.corrections += 1
        s.correct_total_ms += ms
        return out

    def wait_frame(self, after_seq: int, timeout: float) -> PublishedFrame | None:
        """Block (in a worker thread) until a frame newer than ``after_seq`` exists."""
        with self._new_frame:
            self._new_frame.wait_for(
                lambda: self._raw is not None and self._raw.seq > after_seq, timeout)
            return self._corrected

    def model_changed(self) -> None:
        """Point the health report at the (re)loaded model: its name and the calibrated
        per-anomaly thresholds its anomalies are reported at."""
        with self._lock:
            self.health.model = self.vision.name or self.vision.error
            self.health.thresholds = self.vision.thresholds
        with self._defects_lock:
            self.defects.lens = self.vision.lens

    def health_report(self) -> dict[str, object]:
        """Source state, anomalies, persistent lens defects and scene state, as plain types.

        ``state`` is the source state (ok, starting, no_signal, frozen) unless the source is
        fine and the scene is ``covered`` or ``moved``.
        """
        with self._lock:
            report = self.health.snapshot()
        with self._defects_lock:
            started = self.defects.work_size != (0, 0)  # it has seen a frame
            defects = [defect_dict(d) for d in self.defects.defects()] if started else []
            scene, scene_since = self.defects.state, self.defects.state_since
        if report["state"] == "ok" and scene != "ok":
            report["state"] = scene
            report["state_since"] = scene_since
        report["defects"] = defects
        if self.vision.error:
            report["model_error"] = self.vision.error
        if self._analysis_error:
            report["analysis_error"] = self._analysis_error
        return report

    def current_analysis(self) -> Analysis | None:
        """The latest detector analysis (None before the first, or without a model)."""
        return self._analysis

    def defect_mask(self) -> np.ndarray:
        """The persistent defect mask at frame size (HxW uint8, 255 = defect); NotReady
        before the first frame (the frame size is not known yet)."""
        frame = self.latest(False)
        if frame is None:
            raise NotReady(f"camera {self.id} has no frame yet (state: {self.health.state})")
        with self._defects_lock:
            return self.defects.mask_at(max(frame.width, 1), max(frame.height, 1))

    def stats_report(self) -> dict[str, object]:
        s = self.stats
        return {
            "frames": s.frames, "fps": round(s.fps, 2), "analyses": s.analyses,
            "analyze_ms": round(s.analyze_ms, 2), "correct_ms": round(s.correct_ms, 2),
            "corrections": s.corrections, "correct_total_ms": round(s.correct_total_ms, 3),
            "reconnects": s.reconnects, "dropped": s.dropped, "source_errors": s.source_errors,
            "last_error": s.last_error, "model": self.vision.name or "none",
            "backend": self.vision.backend if self.vision.ready else "none",
            "injected": self.source.injected(),
        }

    def tick(self) -> None:
        """Called about once a second from the owner: notices a source gone silent."""
        with self._lock:
            events = self.health.observe_tick(time.monotonic())
        self._emit(events)

    # -- threads -----------------------------------------------------------------------------
    def _emit(self, events: list[HealthEvent]) -> None:
        on_events = self.on_events  # (read once: stop() clears it)
        if events and on_events is not None:
            on_events(self, events)

    def _capture_loop(self) -> None:
        """Open, read until the source fails, reconnect; until stop() or the source ends.

        The back-off (0.25 s doubling to 30 s) is reset only by a delivered frame: a source
        that opens but gives nothing (a truncated file, a server that accepts then drops) is
        retried at the back-off's pace, not in a busy loop.
        """
        backoff = 0.25
        while not self._stop.is_set():
            try:
                self.source.open()
            except SourceClosed as exc:
                self._source_failed(str(exc))
                self._stop.wait(backoff)
                backoff = min(backoff * 2, 30.0)
                continue
            except Exception as exc:  # noqa: BLE001 - a backend bug must not kill the thread
                logger.exception("camera %s: opening source failed", self.id)
                self._source_failed(f"open failed: {exc}")
                self._stop.wait(backoff)
                backoff = min(backoff * 2, 30.0)
                continue
            delivered = ended = False
            while not self._stop.is_set():
                try:
                    image, bgr = self.source.read_native()
                except SourceEnded as exc:
                    logger.info("camera %s: source ended (%s)", self.id, exc)
                    ended = True
                    break
                except SourceClosed as exc:
                    self._source_failed(str(exc))
                    break
                except Exception as exc:  # noqa: BLE001
                    logger.exception("camera %s: reading source failed", self.id)
                    self._source_failed(f"read failed: {exc}")
                    break
                self._hand_over(image, bgr, time.monotonic_ns())
                delivered = True
            self.source.close()
            if ended:
                # after the frames still queued: the process thread then says no_signal
                self._hand_over(None, False, 0)
                return
            if self._stop.is_set():
                return
            self.stats.reconnects += 1
            if delivered:
                backoff = 0.25  # it worked: reconnect at once
            else:
                self._stop.wait(backoff)
                backoff = min(backoff * 2, 30.0)

    def _source_failed(self, why: str) -> None:
        self.stats.source_errors += 1
        self.stats.last_error = why
        logger.warning("camera %s: %s", self.id, why)
        with self._lock:
            events = self.health.source_lost()
        self._emit(events)

    def _source_ended(self) -> None:
        """The source gave its last frame (a file played once): no signal from now on."""
        with self._lock:
            events = self.health.source_lost()
        self._emit(events)

    def _hand_over(self, image: np.ndarray | None, bgr: bool, ts: int) -> None:
        """Queue a captured frame for processing (``image`` None: the source ended).

        A live camera never waits: when processing is behind, the oldest queued frame is
        dropped (counted). A file read as fast as it decodes waits instead (nothing is lost),
        and so does the end marker (no frame follows it that could push it out).
        """
        item = None if image is None else (image, bgr, ts)
        if item is not None and getattr(self.source, "live", True):
            while True:
                try:
                    self._queue.put_nowait(item)
                    return
                except queue.Full:
                    try:
                        self._queue.get_nowait()
                        self.stats.dropped += 1
                    except queue.Empty:
                        pass
        while not self._stop.is_set():
            try:
                self._queue.put(item, timeout=0.2)
                return
            except queue.Full:
                continue

    def _process_loop(self) -> None:
        while not self._stop.is_set():
            try:
                item = self._queue.get(timeout=0.2)
            except queue.Empty:
                continue
            if item is None:
                self._source_ended()
                continue
            image, bgr, ts = item
            try:
                self._process(image, bgr, ts)
            except Exception:  # noqa: BLE001 - one bad frame must not stop the camera
                logger.exception("camera %s: processing a frame failed", self.id)

    def _plan_for(self, analysis: Analysis | None) -> tuple[
            dict[str, float], Correction | None, tuple[str, ...], tuple[tuple[str, float], ...]]:
        """(scores, correction to apply or None, actions, local restorations) for frames
        under ``analysis``.

        Built once per analysis and settings, shared by every frame until the next one. Same
        decision as ``VisionEngine.correct``: the analysis' correction when correction is on;
        an identity correction is skipped (the pixels would not change) but its actions are
        still reported. With restoration on too, detected noise adds a clamped-mean denoise
        and detected blur an unsharp mask (unless it looks like motion blur:
        ``vision.directional``), each as strong as the detector's severity (the cheap CPU
        fallbacks of ``vision.restore``; the learned restorer is for stills).
        """
        settings = (self.correct_enabled, self.restore_enabled)
        plan = self._plan
        if plan[0] is analysis and plan[1] == settings:
            return plan[2], plan[3], plan[4], plan[5]
        scores = dict(analysis.scores) if analysis else {}
        correction, actions, ops = None, (), ()
        if self.correct_enabled and analysis is not None and self.vision.ready:
            if analysis.correction is not None:
                correction, actions = analysis.correction, tuple(analysis.actions)
                if correction.is_identity:
                    correction = None
            if self.restore_enabled:
                ops = tuple((op, float(analysis.extra.get(f"severity.{name}", 0.5)))
                            for name, op in (("noise", "denoise"), ("blur", "sharpen"))
                            if name in analysis.detected
                            and (op != "sharpen" or directional.sharpens(analysis.extra)))
                actions = (*actions, *(op for op, _ in ops))
        self._plan = (analysis, settings, scores, correction, actions, ops)
        return scores, correction, actions, ops

    def _process(self, image: np.ndarray, bgr: bool, ts: int) -> None:
        """Publish one frame, then do the per-frame bookkeeping.

        Consumers come first (the stream rings render the correction straight into their
        slots and wake their clients): everything else a frame needs (frame rate, freeze
        thumbnail, analysis hand-off, health) happens after the clients were woken.
        """
        self.stats.frames += 1
        seq = self.stats.frames
        scores, correction, actions, ops = self._plan_for(self._analysis)
        raw = PublishedFrame(image, seq, ts, False, scores, bgr=bgr)
        corrected = PublishedFrame(image, seq, ts, True, scores, actions, correction, bgr, ops)
        with self._lock:
            self._raw, self._corrected = raw, corrected
            sinks = self._sinks
            self._new_frame.notify_all()
        for sink in sinks:
            try:
                sink(raw, corrected)
            except Exception:  # noqa: BLE001 - one bad consumer must not stop capture
                logger.exception("camera %s: frame sink failed", self.id)
        self._update_fps(ts)
        # freeze detection needs a tiny grey view, at most every THUMB_PERIOD_NS (a frozen
        # source repeats its frame for seconds): subsample before converting
        thumb = None
        if ts - self._thumb_ts >= THUMB_PERIOD_NS:
            self._thumb_ts = ts
            step = max(1, min(image.shape[0], image.shape[1]) // 96)
            grey = cv2.COLOR_BGR2GRAY if bgr else cv2.COLOR_RGB2GRAY
            thumb = cv2.resize(cv2.cvtColor(image[::step, ::step], grey), (32, 24),
                               interpolation=cv2.INTER_AREA)
        self._maybe_submit(raw)
        with self._lock:
            events = self.health.observe_frame(thumb, ts / 1e9)
        self._emit(events)

    def _update_fps(self, ts: int) -> None:
        start, count = self._fps_window
        now = ts / 1e9
        count += 1
        if now - start >= 1.0:
            self.stats.fps = count / (now - start)
            start, count = now, 0
        self._fps_window = (start, count)

    def _maybe_submit(self, frame: PublishedFrame) -> None:
        if not self._want_frame:
            return
        with self._pending_ready:
            self._want_frame = False
            self._pending = frame  # its RGB view is made on the analysis thread
            self._pending_ready.notify()

    def _track_defects(self, image: np.ndarray, analysis: Analysis | None) -> None:
        try:
            with self._defects_lock:
                found = self.defects.update(image, analysis.mask if analysis else None)
                confidence = max((d.confidence for d in self.defects.defects()), default=None)
        except Exception:  # noqa: BLE001 - the tracker must not stop analysis
            logger.exception("camera %s: defect tracking failed", self.id)
            return
        # the lens counts as obstructed while a persistent defect (or "covered") stands
        with self._lock:
            events = self.health.set_detected("obstruction", confidence is not None,
                                              float(confidence or 0.0))
        self._emit([defect_event(e) for e in found] + events)

    def _maybe_keep(self, image: np.ndarray, analysis: Analysis) -> None:
        """Keep an anomalous frame for on-device adaptation, only when collection is on."""
        if self.store is None or not self.store.enabled or not analysis.detected:
            return
        try:
            self.store.add(image, {"camera": self.id, "scores": analysis.scores,
                                   "detected": list(analysis.detected)})
        except Exception:  # noqa: BLE001 - a full disk must not stop the camera
            logger.exception("camera %s: keeping a sample failed", self.id)

    def _analysable(self, image: np.ndarray) -> bool:
        """Whether the detector and the defect tracker can take frames of this size.

        Frames under MIN_SIDE a side (a tiny test image, a thumbnail stream) cannot be
        analysed: the camera then only passes them through, the health report says why
        (``analysis_error``) and the log says it once per frame size.
        """
        h, w = image.shape[:2]
        small = too_small(w, h, "frames")
        why = f"{small}: anomalies and lens defects are not tracked" if small else ""
        if why == self._analysis_error:
            return not why
        if why and (w, h) not in self._warned_sizes:
            self._warned_sizes.add((w, h))
            logger.warning("camera %s: %s", self.id, why)
        if why:
            self.stats.last_error = why
            with self._lock:  # an analysis of the earlier, larger frames no longer applies
                self._analysis = None
        self._analysis_error = why
        self._emit([HealthEvent("analysis", "unavailable" if why else "available",
                                time.time())])
        return not why

    def _analyze_loop(self) -> None:
        """Analyse the newest frame at most every ``analyze_period`` seconds.

        Correction parameters change slowly, so analysis runs decoupled from the frame rate:
        the capture thread hands over a frame only when this thread asks for one. The
        persistent-defect tracker runs here too (with the detector's obstruction mask when
        there is a model, on temporal evidence alone when there is none).
        """
        lower_thread_priority(ANALYSIS_NICE)
        while not self._stop.is_set():
            started = time.monotonic()
            with self._pending_ready:
                self._pending = None
                self._want_frame = True
                self._pending_ready.wait_for(
                    lambda: self._pending is not None or self._stop.is_set())
                frame, self._pending = self._pending, None
            if frame is None:
                continue
            image = frame.image
            if not self._analysable(image):
                self._stop.wait(max(0.0, started + self.analyze_period - time.monotonic()))
                continue
            t0 = time.perf_counter()
            try:
                # the scores health judges elsewhere (obstruction: the defect tracker) need
                # no estimator
                analysis = self.vision.analyze(image, self.health.judged_elsewhere)
            except Exception as exc:  # noqa: BLE001
                logger.exception("camera %s: analysis failed", self.id)
                self.stats.last_error = f"analysis failed: {exc}"
                analysis = None
            self.stats.analyze_ms = (time.perf_counter() - t0) * 1e3
            try:
                self._track_defects(image, analysis)
                if analysis is not None:
                    self.stats.analyses += 1
                    with self._lock:
                        self._analysis = analysis
                        events = self.health.observe_analysis(analysis.scores)
                    self._emit(events)
                    self._maybe_keep(image, analysis)
            except Exception:  # noqa: BLE001 - keep analysing the next frames
                logger.exception("camera %s: handling an analysis failed", self.id)
            rest = started + self.analyze_period - time.monotonic()
            if rest > 0:
                self._stop.wait(rest)


def _named(name: str, target: Callable[[], None]) -> Callable[[], None]:
    """``target`` run under an OS-level thread name (``top -H``, ``ps -L``, /proc/PID/task/*/comm
    show "capture-cam0" instead of "camheald"; the kernel keeps 15 bytes of it)."""

    def run() -> None:
        set_os_thread_name(name)
        target()

    return run


_priority_refused = False  # logged once per process, not once per camera


def lower_thread_priority(increment: int) -> None:
    """Raise the calling thread's nice value by ``increment`` (Linux: per thread; lowering a
    priority needs no privilege). Best effort: a refusal is logged once, as a warning (the
    analysis then competes with capture on equal terms)."""
    global _priority_refused
    try:
        tid = threading.get_native_id()
        os.setpriority(os.PRIO_PROCESS, tid, os.getpriority(os.PRIO_PROCESS, tid) + increment)
    except AttributeError:  # (no per-thread priorities on this platform)
        return
    except OSError as exc:
        if _priority_refused:
            return
        _priority_refused = True
        logger.warning("analysis threads keep the capture threads' priority: setpriority "
                       "refused (%s); a seccomp filter is the likely cause (systemd's "
                       "SystemCallFilter=~@resources denies it)", exc)


def set_os_thread_name(name: str) -> None:
    """Name the calling thread for the OS (Linux prctl PR_SET_NAME); a no-op elsewhere."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(15, name.encode()[:15], 0, 0, 0)  # PR_SET_NAME
    except (OSError, AttributeError):
        pass


def defect_dict(d: Defect) -> dict[str, object]:
    """A persistent defect as plain types (for reports and D-Bus)."""
    return {"id": d.id, "kind": d.kind, "confidence": round(float(d.confidence), 3),
            "bbox": [int(v) for v in d.bbox], "since": float(d.since),
            "first_frame": int(d.first_frame)}


def defect_event(e: DefectEvent) -> HealthEvent:
    if e.kind == "state":
        return HealthEvent("state", e.state, e.wall_time)
    assert e.defect is not None
    return HealthEvent(f"defect_{e.kind}", e.defect.kind, e.wall_time,
                       float(e.defect.confidence), defect_dict(e.defect))
