//! Capabilities: a prisoner is powerless, even as uid 0.
//!
//! Before the user switch (still root, with CAP_SETPCAP): the bounding set is emptied, so no
//! exec can ever grant a capability back (setuid-root or file-capability binaries); the ambient
//! set is cleared; the securebits are set and locked so that uid 0 means nothing (NOROOT), uid
//! changes never adjust capabilities (NO_SETUID_FIXUP), KEEP_CAPS stays off and ambient
//! capabilities cannot be raised. After the switch the remaining sets are cleared explicitly
//! (NO_SETUID_FIXUP keeps the kernel from doing it, so we never depend on that fixup).

use crate::jail::SetupError;

const SECBIT_NOROOT: u64 = 1 << 0;
const SECBIT_NOROOT_LOCKED: u64 = 1 << 1;
const SECBIT_NO_SETUID_FIXUP: u64 = 1 << 2;
const SECBIT_NO_SETUID_FIXUP_LOCKED: u64 = 1 << 3;
const SECBIT_KEEP_CAPS_LOCKED: u64 = 1 << 5;
const SECBIT_NO_CAP_AMBIENT_RAISE: u64 = 1 << 6;
const SECBIT_NO_CAP_AMBIENT_RAISE_LOCKED: u64 = 1 << 7;

/// The securebits of every prisoner under ALL and IPC.
pub const SECUREBITS: u64 = SECBIT_NOROOT
    | SECBIT_NOROOT_LOCKED
    | SECBIT_NO_SETUID_FIXUP
    | SECBIT_NO_SETUID_FIXUP_LOCKED
    | SECBIT_KEEP_CAPS_LOCKED
    | SECBIT_NO_CAP_AMBIENT_RAISE
    | SECBIT_NO_CAP_AMBIENT_RAISE_LOCKED;

/// `_LINUX_CAPABILITY_VERSION_3`: 64-bit sets, split over two `CapData`.
const CAPABILITY_VERSION_3: u32 = 0x2008_0522;

#[repr(C)]
struct CapHeader {
    version: u32,
    pid: libc::c_int,
}

#[repr(C)]
#[derive(Clone, Copy, Default, PartialEq, Eq)]
struct CapData {
    effective: u32,
    permitted: u32,
    inheritable: u32,
}

fn prctl(step: &str, option: libc::c_int, arg: libc::c_ulong) -> Result<libc::c_int, SetupError> {
    // SAFETY: the prctl options used here take integer arguments only, no pointers.
    let ret = unsafe { libc::prctl(option, arg, 0 as libc::c_ulong, 0 as libc::c_ulong, 0) };
    if ret < 0 {
        Err(SetupError::last_os_error(step))
    } else {
        Ok(ret)
    }
}

/// Child, root: empties the bounding and ambient sets and locks the securebits.
pub fn drop_before_switch() -> Result<(), SetupError> {
    for cap in 0..64 {
        let step = || format!("dropping capability {cap} from the bounding set");
        match prctl(&step(), libc::PR_CAPBSET_DROP, cap) {
            Ok(_) => {}
            // Past the kernel's last capability.
            Err(e) if e.source.raw_os_error() == Some(libc::EINVAL) && cap > 0 => break,
            Err(e) => return Err(e),
        }
    }
    prctl(
        "clearing the ambient capabilities",
        libc::PR_CAP_AMBIENT,
        libc::PR_CAP_AMBIENT_CLEAR_ALL as libc::c_ulong,
    )?;
    prctl(
        "locking the securebits (NOROOT, NO_SETUID_FIXUP, no KEEP_CAPS, no ambient raise)",
        libc::PR_SET_SECUREBITS,
        SECUREBITS as libc::c_ulong,
    )?;
    Ok(())
}

fn capget() -> Result<[CapData; 2], SetupError> {
    let mut header = CapHeader {
        version: CAPABILITY_VERSION_3,
        pid: 0,
    };
    let mut data = [CapData::default(); 2];
    // SAFETY: with a version 3 header, capget reads the header and writes two CapData structs,
    // which `data` holds.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_capget,
            &mut header as *mut CapHeader,
            data.as_mut_ptr(),
        )
    };
    if ret < 0 {
        return Err(SetupError::last_os_error(
            "reading the child's capabilities",
        ));
    }
    Ok(data)
}

/// Child, after the user switch: clears the effective, permitted and inheritable sets.
pub fn clear_after_switch() -> Result<(), SetupError> {
    let mut header = CapHeader {
        version: CAPABILITY_VERSION_3,
        pid: 0,
    };
    let data = [CapData::default(); 2];
    // SAFETY: with a version 3 header, capset reads the header and two CapData structs.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_capset,
            &mut header as *mut CapHeader,
            data.as_ptr(),
        )
    };
    if ret < 0 {
        return Err(SetupError::last_os_error(
            "clearing the child's capability sets",
        ));
    }
    Ok(())
}

/// Asserts no capability is left anywhere and the securebits are locked.
pub fn verify() -> Result<(), SetupError> {
    let step = "checking the child's capabilities";
    if capget()? != [CapData::default(); 2] {
        return Err(SetupError::check(
            step,
            "effective, permitted or inheritable set not empty",
        ));
    }
    for cap in 0..64 {
        match prctl(step, libc::PR_CAPBSET_READ, cap) {
            Ok(0) => {}
            Ok(_) => {
                return Err(SetupError::check(
                    step,
                    format!("capability {cap} still in the bounding set"),
                ))
            }
            Err(_) => break,
        }
    }
    let bits = prctl(step, libc::PR_GET_SECUREBITS, 0)?;
    if u64::try_from(bits).unwrap_or(0) & SECUREBITS != SECUREBITS {
        return Err(SetupError::check(
            step,
            format!("securebits are {bits:#x}, expected {SECUREBITS:#x}"),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn securebits_lock_every_bit_they_set_and_keep_caps_stays_off() {
        assert_eq!(SECUREBITS, 0xef);
        assert_eq!(SECUREBITS & (1 << 4), 0, "KEEP_CAPS must stay off");
        for (bit, lock) in [
            (SECBIT_NOROOT, SECBIT_NOROOT_LOCKED),
            (SECBIT_NO_SETUID_FIXUP, SECBIT_NO_SETUID_FIXUP_LOCKED),
            (
                SECBIT_NO_CAP_AMBIENT_RAISE,
                SECBIT_NO_CAP_AMBIENT_RAISE_LOCKED,
            ),
        ] {
            assert_eq!(lock, bit << 1);
            assert_ne!(SECUREBITS & lock, 0);
        }
    }
}
