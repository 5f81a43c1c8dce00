# camheal: the two commands of the README's quick start are `make demo` and `make test`.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip install --disable-pip-version-check -q
DEMO_ARGS ?=

.PHONY: demo test bench lint clean

$(PY):
	@$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 10), "camheal needs Python >= 3.10, found " + sys.version.split()[0]'
	$(PYTHON) -m venv $(VENV)

# Runtime install: numpy, OpenCV, ONNX Runtime, dbus-fast (no PyTorch).
$(VENV)/.runtime: pyproject.toml | $(PY)
	$(PIP) -e .
	@touch $@

# Test/training install: dev tools plus the local CPU build of PyTorch (never CUDA wheels).
$(VENV)/.dev: pyproject.toml $(VENV)/.runtime
	$(PIP) -e '.[dev]' 'torch==2.13.0' 'kornia>=0.7'
	@touch $@

.PHONY: dbus-daemon
dbus-daemon:
	@.ci/ensure-dbus-daemon

demo: $(VENV)/.runtime dbus-daemon
	$(PY) -m camheald.demo $(DEMO_ARGS)

test: $(VENV)/.dev dbus-daemon
	@# the RTSP camera test needs GStreamer's RTSP server; it skips (saying why) without it
	@if [ -x .ci/ensure-rtsp-deps ]; then .ci/ensure-rtsp-deps || true; fi
	@.ci/ensure-dbusmock $(PY)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/pytest -q

# Benchmarks: the dev install plus py-spy (the daemon profile of docs/BENCHMARKS.md).
$(VENV)/.bench: pyproject.toml $(VENV)/.dev
	$(PIP) -e '.[bench]'
	@touch $@

bench: $(VENV)/.bench dbus-daemon
	$(PY) -m benchmarks.run

clean:
	rm -rf $(VENV) demo-out .pytest_cache .ruff_cache

# System service: make install-system [PLATFORM=generic|jetson|rpi] [DESTDIR=/staging]
# Installs camheal into /opt/camheal (its own venv), the unit, D-Bus policy and activation,
# sysusers/tmpfiles snippets, the polkit actions and a default config (kept if present).
PLATFORM ?= generic
SYSVENV  := /opt/camheal
UNITDIR  := /etc/systemd/system

.PHONY: install-system uninstall-system
install-system:
	install -d $(DESTDIR)$(UNITDIR) $(DESTDIR)/usr/share/dbus-1/system.d \
	  $(DESTDIR)/usr/share/dbus-1/system-services $(DESTDIR)/usr/lib/sysusers.d \
	  $(DESTDIR)/usr/lib/tmpfiles.d $(DESTDIR)/usr/share/polkit-1/actions \
	  $(DESTDIR)/etc/camheal $(DESTDIR)/usr/local/bin $(DESTDIR)/usr/share/camheal/profiles
	install -m 0644 hardware/profiles/*.toml $(DESTDIR)/usr/share/camheal/profiles/
	install -m 0644 systemd/camheald.service $(DESTDIR)$(UNITDIR)/camheald.service
	if [ "$(PLATFORM)" != generic ]; then \
	  install -d $(DESTDIR)$(UNITDIR)/camheald.service.d && \
	  install -m 0644 systemd/$(PLATFORM)/camheald.service.d/*.conf \
	    $(DESTDIR)$(UNITDIR)/camheald.service.d/; fi
	install -m 0644 systemd/io.camheal.Camheal1.conf $(DESTDIR)/usr/share/dbus-1/system.d/
	install -m 0644 systemd/io.camheal.Camheal1.service $(DESTDIR)/usr/share/dbus-1/system-services/
	install -m 0644 systemd/camheal.sysusers $(DESTDIR)/usr/lib/sysusers.d/camheal.conf
	install -m 0644 systemd/camheal.tmpfiles $(DESTDIR)/usr/lib/tmpfiles.d/camheal.conf
	install -m 0644 systemd/io.camheal.Camheal1.policy $(DESTDIR)/usr/share/polkit-1/actions/
	[ -e $(DESTDIR)/etc/camheal/camheald.toml ] || \
	  install -m 0644 daemon/camheald/camheald.toml $(DESTDIR)/etc/camheal/camheald.toml
	@# Pi and Jetson: the venv sees the system's picamera2 / JetPack OpenCV+TensorRT
	if [ -z "$(NO_VENV)" ]; then $(PYTHON) -m venv \
	    $(if $(filter generic,$(PLATFORM)),,--system-site-packages) $(DESTDIR)$(SYSVENV) && \
	  $(DESTDIR)$(SYSVENV)/bin/pip install --disable-pip-version-check -q .; fi
	@# JetPack's OpenCV has GStreamer (gst: sources); the PyPI wheel would hide it
	if [ -z "$(NO_VENV)" ] && [ "$(PLATFORM)" = jetson ]; then \
	  $(DESTDIR)$(SYSVENV)/bin/pip uninstall -y -q opencv-python-headless; fi
	ln -sf $(SYSVENV)/bin/camheald $(DESTDIR)/usr/local/bin/camheald
	ln -sf $(SYSVENV)/bin/camheal $(DESTDIR)/usr/local/bin/camheal
	if [ -z "$(DESTDIR)" ] && [ -d /run/systemd/system ]; then \
	  systemd-sysusers camheal.conf && systemd-tmpfiles --create camheal.conf && \
	  systemctl daemon-reload && systemctl reload dbus || true; \
	  echo "installed: systemctl enable --now camheald"; fi

uninstall-system:
	-[ -z "$(DESTDIR)" ] && [ -d /run/systemd/system ] && systemctl disable --now camheald
	rm -rf $(DESTDIR)$(UNITDIR)/camheald.service $(DESTDIR)$(UNITDIR)/camheald.service.d \
	  $(DESTDIR)/usr/share/dbus-1/system.d/io.camheal.Camheal1.conf \
	  $(DESTDIR)/usr/share/dbus-1/system-services/io.camheal.Camheal1.service \
	  $(DESTDIR)/usr/lib/sysusers.d/camheal.conf $(DESTDIR)/usr/lib/tmpfiles.d/camheal.conf \
	  $(DESTDIR)/usr/share/polkit-1/actions/io.camheal.Camheal1.policy \
	  $(DESTDIR)/usr/local/bin/camheald $(DESTDIR)/usr/local/bin/camheal $(DESTDIR)$(SYSVENV) \
	  $(DESTDIR)/usr/share/camheal
	@echo "kept /etc/camheal and /var/lib/camheal (your configuration and data)"
