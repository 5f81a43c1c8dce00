"""Public types of the defect tracker: defects, events and the tuning."""

from __future__ import annotations

from dataclasses import dataclass

KINDS = ("dirt", "crack", "covered")


@dataclass(frozen=True)
class Defect:
    """One persistent defect.

    Attributes:
        kind: "dirt", "crack" or "covered".
        confidence: 0..1.
        bbox: (x, y, w, h) in frame pixels of the frames given to ``update``.
        since: unix time when the evidence first appeared.
        first_frame: index of the update (or the caller's frame index) where it first appeared.
        id: stable identity while the defect persists.
    """

    kind: str
    confidence: float
    bbox: tuple[int, int, int, int]
    since: float
    first_frame: int
    id: int = 0


@dataclass(frozen=True)
class DefectEvent:
    """A change: kind "detected"/"cleared" (``defect`` set) or "state" (``state`` set)."""

    kind: str
    wall_time: float
    defect: Defect | None = None
    state: str = ""


@dataclass
class DefectConfig:
    """Tuning of the tracker; the defaults suit 5-15 updates per second."""

    work_width: int = 320  # frames are reduced by an integer factor to at most this width
    beta_min: float = 0.04  # running-mean weight floor of the temporal statistics
    warmup: int = 4  # updates before any vote
    min_surround: float = 6.0  # grey levels (temporal std) of surround activity
    rel_surround: float = 0.25  # ... and this fraction of the scene's busiest (95th percentile)
    a_on: float = 0.4  # attenuation above which a pixel votes "defect"
    a_off: float = 0.2  # attenuation below which a pixel votes "clear"
    min_now: float = 2.0  # grey levels of short-term surround activity for a "defect" vote
    short_beta: float = 0.15  # weight of the newest change in the short-term activity
    gamma: float = 0.15  # vote weight per update
    p_on: float = 0.6  # pixel hysteresis on the votes
    p_off: float = 0.35
    closing: float = 0.2  # closing kernel, fraction of the working height
    coherence: float = 0.5  # consistency of the direction of travel needed for the hole cue
    min_travel: float = 0.05  # mean speed (px per update, half resolution) of a path or lane
    opening: float = 0.04  # opening kernel (removes edge-jitter activity), fraction of height
    ring: int = 32  # earlier frames kept for the motion-compensated comparison
    max_shift: float = 0.35  # largest camera shift used, fraction of the working height
    motion_diff: float = 14.0  # grey levels
    half_vote: float = 0.5  # weight of a one-sided motion vote
    osd_still: float = 8.0  # grey levels: a pixel that changed less while the camera moved
    osd_white: float = 230.0  # ... is this bright (largest channel), next to an edge this sharp
    osd_edge: float = 150.0  # (3x3 Sobel |gx| + |gy| of the mean view) is on-screen display
    osd_margin: float = 0.02  # no votes within this fraction of the height around it
    min_shift: float = 2.0  # pixels of camera shift that give evidence
    reg_tol: float = 1.0  # pixels of misregistration tolerated (times the local gradient)
    key_shift: float = 0.05  # a new camera-motion keyframe after this shift (fraction of height)
    key_age: int = 8  # ... or after this many updates
    grow: float = 0.05  # growth into dark still pixels, fraction of the working height
    grow_speed: float = 0.3  # ... only while the camera moves this fast (px per update)
    rim: float = 0.012  # blobs are widened by this fraction of the working height
    min_area: float = 0.0015  # fraction of the working frame
    darker_px: float = 0.92  # a voting pixel's mean must be below this fraction of the local
    darker: float = 0.9  # a component's mean must be below this fraction of its ring's
    # updates a component must persist before it is reported (moving camera); also the
    # extra wait after which a still-growing one is reported anyway (both cameras)
    confirm: int = 4
    confirm_fixed: int = 8  # ... with a fixed camera, whose cue is the weaker one
    # ... and for at least this long (seconds): traffic whose paths leave a gap for a moment
    # (cars on a road seen by a fixed camera) made tracks that lived 0.7-1.9 s
    confirm_fixed_s: float = 2.5
    # ... unless an appearance cue (segmenter, detector mask) has voted for most of the track
    # for this many updates in a row (a blip of the mask is not a defect)
    looked_for: int = 8
    # a track is reported only once this share of ``min_area`` voted for itself (not grown
    # into): a few stale votes grown over a dark road when a pan resumed are not a defect
    min_voted: float = 0.5
    lens_weight: float = 0.5  # weight of the lens-defect segmenter's vote (times gamma)
    lens_still: float = 5.0  # ... which says "defect" only where the pixel's temporal std
    # (grey levels, fixed view) is below this: a lens defect does not change, people
    # standing and talking do
    lens_every: int = 2  # the segmenter runs on every n-th update of a fixed view (its map
    # is reused in between: the view is fixed)
    lens_beta: float = 0.1  # its maps are averaged with this weight (after the first 10)
    follow: float = 0.9  # a moving-camera track whose inside changes (in the image, over
    # follow_lag updates) this much of what changes in the ring around it moves with the
    # camera: scene content, not reported
    follow_lag: int = 6
    clear_after: int = 3  # updates a reported component may be missing before "cleared"
    join: float = 0.03  # pieces this close (fraction of the working height) are one defect
    settled: float = 1.15  # growth over two updates below which a new defect's extent is settled
    held: float = 0.05  # a reported defect is held while less of it than this has votes
    covered_frac: float = 0.92  # fraction of flat cells for "covered"
    covered_s: float = 2.0
    uncovered_s: float = 1.0
    moved_sim: float = 0.5  # edge similarity to the reference below which a change starts
    recover_sim: float = 0.65
    moved_s: float = 5.0  # the change must last this long and be stable
    moved_latch_s: float = 30.0  # the "moved" state is shown for this long
    ref_tau_s: float = 10.0  # time constant of the reference edge map
    short_tau_s: float = 1.0  # time constant of the view whose edges are compared
