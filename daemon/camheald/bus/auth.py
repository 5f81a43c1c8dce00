"""Who may call what: one table of every method and writable property, checked via polkit.

The bus policy (io.camheal.Camheal1.conf) already limits who can talk to the service at all
(root and group ``camheal``); this module decides per member, the way fwupd and
power-profiles-daemon do. PUBLIC members are served to anyone the bus policy lets through;
privileged members ask polkit about the caller's unique bus name and are denied on any error.
When polkit is not on the bus at all, only root and members of ``camheal-admin`` pass.
"""

from __future__ import annotations

import asyncio
import grp
import logging
import os
import pwd
import time
from collections.abc import Collection
from dataclasses import dataclass, field

from dbus_fast import Message, MessageType, Variant
from dbus_fast.aio import MessageBus

from camheald.errors import NotAllowed

logger = logging.getLogger(__name__)

PUBLIC = "public"
ACTION_CONFIGURE = "io.camheal.Camheal1.configure"
ACTION_COLLECT = "io.camheal.Camheal1.collect-data"
ACTION_EXPORT = "io.camheal.Camheal1.export-data"
ADMIN_GROUP = "camheal-admin"

#: every method and writable property, keyed "<Interface>.<Member>" (the interface's last
#: name component). Property reads are governed by the bus policy alone; an entry for a
#: property is what a *write* (org.freedesktop.DBus.Properties.Set) needs. A member missing
#: here is refused (fail closed).
AUTH: dict[str, str] = {
    "Manager.ListCameras": PUBLIC,
    "Manager.Version": PUBLIC,
    "Manager.CorrectImage": PUBLIC,
    "Manager.SetDataCollection": ACTION_COLLECT,
    "Manager.ExportSamples": ACTION_EXPORT,
    "Manager.PurgeSamples": ACTION_EXPORT,
    "Camera.CaptureFrame": PUBLIC,
    "Camera.Subscribe": PUBLIC,
    "Camera.Unsubscribe": PUBLIC,
    "Camera.CaptureBurst": PUBLIC,
    "Camera.GetDefectMask": PUBLIC,
    "Camera.SetCorrectionEnabled": ACTION_CONFIGURE,
}

POLKIT_NAME = "org.freedesktop.PolicyKit1"
POLKIT_PATH = "/org/freedesktop/PolicyKit1/Authority"
POLKIT_IFACE = "org.freedesktop.PolicyKit1.Authority"
_CHECK_ALLOW_USER_INTERACTION = 1
_DBUS = ("org.freedesktop.DBus", "/org/freedesktop/DBus", "org.freedesktop.DBus")


def admin_gid(name: str = ADMIN_GROUP) -> int | None:
    """The gid of the admin group, or None when the group does not exist (blocking NSS)."""
    try:
        return grp.getgrnam(name).gr_gid
    except KeyError:
        return None


def user_gids(uid: int) -> set[int]:
    """Primary and supplementary gids of ``uid`` from passwd/group (blocking NSS)."""
    try:
        pw = pwd.getpwuid(uid)
    except KeyError:
        return set()
    return {pw.pw_gid, *os.getgrouplist(pw.pw_name, pw.pw_gid)}


def fallback_allows(uid: int, gids: Collection[int], admin: int | None) -> bool:
    """Without polkit: root always, otherwise only members of the admin group (gid ``admin``)."""
    if uid == 0:
        return True
    return admin is not None and admin in gids


@dataclass
class Authorizer:
    """Decides whether the caller (a unique bus name) may call a member.

    Args:
        bus: the daemon's own connection; polkit and the bus driver are asked over it.
        timeout_s: how long to wait for polkit without user interaction.
        interactive_timeout_s: how long to wait when the caller allowed interactive
            authorization (a password prompt from the caller's agent takes human time).
        presence_ttl_s: how long the "is polkit on the bus" answer is reused.
    """

    bus: MessageBus
    timeout_s: float = 10.0
    interactive_timeout_s: float = 120.0
    presence_ttl_s: float = 5.0
    admin_group: str = ADMIN_GROUP
    _presence: tuple[float, bool] | None = field(default=None, init=False, repr=False)

    async def check(self, sender: str, member: str, interactive: bool = False) -> None:
        """Return if ``sender`` may call ``member`` ("Interface.Member"); else raise NotAllowed.

        ``interactive`` should be the caller's ALLOW_INTERACTIVE_AUTHORIZATION message flag:
        polkit may then ask the caller's authentication agent for a password. Without it
        polkit answers at once from its rules (the normal case on a headless device, where
        rules grant e.g. camheal-admin), so no call ever hangs on a prompt nobody sees.
        """
        action = AUTH.get(member)
        if action is None:
            logger.warning("no authorization entry for %s; refusing %s", member, sender)
            raise NotAllowed(f"{member} is not in the authorization table")
        if action == PUBLIC:
            return
        if not sender:
            raise NotAllowed(f"{member} needs authorization and the caller is unknown")
        try:
            present = await self._polkit_present()
        except Exception as exc:  # the bus driver itself failed: fail closed
            logger.warning("cannot tell whether polkit is running (%s); refusing %s",
                           exc, sender)
            raise NotAllowed(f"{member}: authorization check failed") from None
        if present:
            await self._ask_polkit(sender, member, action, interactive)
        else:
            await self._check_fallback(sender, member)

    # -- polkit -----------------------------------------------------------------------------
    async def _polkit_present(self) -> bool:
        now = time.monotonic()
        if self._presence is not None and now - self._presence[0] < self.presence_ttl_s:
            return self._presence[1]
        owned = await self._driver("NameHasOwner", "s", [POLKIT_NAME])
        present = bool(owned[0])
        if not present:  # polkitd is usually bus-activated: activatable counts as present
            names = await self._driver("ListActivatableNames", "", [])
            present = POLKIT_NAME in names[0]
        if self._presence is None or self._presence[1] != present:
            logger.info("polkit is %s on the bus", "available" if present else "absent")
        self._presence = (now, present)
        return present

    async def _ask_polkit(self, sender: str, member: str, action: str,
                          interactive: bool) -> None:
        flags = _CHECK_ALLOW_USER_INTERACTION if interactive else 0
        msg = Message(destination=POLKIT_NAME, path=POLKIT_PATH, interface=POLKIT_IFACE,
                      member="CheckAuthorization", signature="(sa{sv})sa{ss}us",
                      body=[["system-bus-name", {"name": Variant("s", sender)}],
                            action, {}, flags, ""])
        timeout = self.interactive_timeout_s if interactive else self.timeout_s
        try:
            reply = await asyncio.wait_for(self.bus.call(msg), timeout)
        except asyncio.TimeoutError:
            logger.warning("polkit did not answer about %s for %s within %.0f s; refusing",
                           action, sender, timeout)
            raise NotAllowed(f"{member}: authorization check timed out") from None
        except Exception as exc:
            logger.warning("polkit check of %s for %s failed (%s); refusing", action, sender, exc)
            raise NotAllowed(f"{member}: authorization check failed") from None
        if reply is None or reply.message_type != MessageType.METHOD_RETURN:
            err = reply.error_name if reply is not None else "no reply"
            logger.warning("polkit refused to check %s for %s (%s)", action, sender, err)
            raise NotAllowed(f"{member}: authorization check failed")
        try:
            authorized, challenge = _parse_result(reply)
        except ValueError as exc:
            logger.warning("malformed polkit reply about %s for %s (%s); refusing",
                           action, sender, exc)
            raise NotAllowed(f"{member}: authorization check failed") from None
        if authorized:
            logger.info("polkit allows %s (%s) for %s", member, action, sender)
            return
        logger.info("polkit denies %s (%s) for %s%s", member, action, sender,
                    " (authentication required)" if challenge else "")
        if challenge:
            raise NotAllowed(f"{member} requires authentication for {action}; call with "
                             "interactive authorization allowed, or ask an administrator")
        raise NotAllowed(f"{member} is not allowed: polkit denies {action}")

    # -- without polkit ---------------------------------------------------------------------
    async def _check_fallback(self, sender: str, member: str) -> None:
        try:
            creds = (await self._driver("GetConnectionCredentials", "s", [sender]))[0]
            uid = _variant_value(creds.get("UnixUserID"))
            if not isinstance(uid, int):
                uid = (await self._driver("GetConnectionUnixUser", "s", [sender]))[0]
            gids = _variant_value(creds.get("UnixGroupIDs"))
            if not isinstance(uid, int) or isinstance(uid, bool):
                raise ValueError("no uid")
            loop = asyncio.get_running_loop()
            admin = await loop.run_in_executor(None, admin_gid, self.admin_group)
            if not isinstance(gids, list):  # older bus daemons: ask NSS instead
                gids = await loop.run_in_executor(None, user_gids, uid)
        except Exception as exc:
            logger.warning("cannot identify %s (%s); refusing %s", sender, exc, member)
            raise NotAllowed(f"{member}: cannot identify the caller") from None
        if fallback_allows(uid, gids, admin):
            logger.info("polkit absent: allowing %s for %s (uid %d)", member, sender, uid)
            return
        logger.info("polkit absent: refusing %s for %s (uid %d)", member, sender, uid)
        raise NotAllowed(f"{member} is only for root and group {self.admin_group} "
                         "(polkit is not running)")

    async def _driver(self, member: str, signature: str, body: list) -> list:
        dest, path, iface = _DBUS
        reply = await asyncio.wait_for(self.bus.call(Message(
            destination=dest, path=path, interface=iface, member=member,
            signature=signature, body=body)), self.timeout_s)
        if reply is None or reply.message_type != MessageType.METHOD_RETURN:
            raise RuntimeError(f"{member}: {reply.error_name if reply else 'no reply'}")
        return reply.body


def _variant_value(value: object) -> object:
    return value.value if isinstance(value, Variant) else value


def _parse_result(reply: Message) -> tuple[bool, bool]:
    """(is_authorized, is_challenge) from a CheckAuthorization reply of signature (bba{ss})."""
    if reply.signature != "(bba{ss})" or len(reply.body) != 1:
        raise ValueError(f"signature {reply.signature!r}")
    result = reply.body[0]
    if len(result) != 3 or not all(isinstance(v, bool) for v in result[:2]):
        raise ValueError("unexpected result shape")
    return result[0], result[1]
