//! eBPF without a toolchain: a tiny assembler for the instructions the prison's cgroup programs
//! use, and the `bpf(2)` calls that load, attach and query them.
//!
//! Jumps name a [`Label`] and are resolved when the program is finished, so no offset is ever
//! counted by hand (the research prototype had one wrong offset that silently denied a
//! legitimate bind). What the programs do is tested instruction by instruction in
//! `sockaddr.rs` with an interpreter for exactly this subset.

use std::ffi::CStr;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

/// One `struct bpf_insn`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(C)]
pub struct Insn {
    pub code: u8,
    /// dst_reg in the low nibble, src_reg in the high one.
    pub regs: u8,
    pub off: i16,
    pub imm: i32,
}

#[cfg(any(test, feature = "fuzzing"))]
impl Insn {
    pub fn dst(&self) -> u8 {
        self.regs & 0xf
    }

    pub fn src(&self) -> u8 {
        self.regs >> 4
    }
}

// Instruction classes, sizes, modes and operations (linux/bpf_common.h, linux/bpf.h).
pub const CLASS_LD: u8 = 0x00;
pub const CLASS_LDX: u8 = 0x01;
pub const CLASS_ST: u8 = 0x02;
pub const CLASS_STX: u8 = 0x03;
pub const CLASS_ALU: u8 = 0x04;
pub const CLASS_JMP: u8 = 0x05;
pub const CLASS_JMP32: u8 = 0x06;
pub const CLASS_ALU64: u8 = 0x07;
pub const SIZE_W: u8 = 0x00;
pub const SIZE_H: u8 = 0x08;
pub const SIZE_DW: u8 = 0x18;
pub const MODE_IMM: u8 = 0x00;
pub const MODE_MEM: u8 = 0x60;
pub const MODE_ATOMIC: u8 = 0xc0;
pub const SRC_K: u8 = 0x00;
pub const SRC_X: u8 = 0x08;
pub const OP_ADD: u8 = 0x00;
pub const OP_AND: u8 = 0x50;
pub const OP_MOV: u8 = 0xb0;
pub const OP_END: u8 = 0xd0;
/// With OP_END: convert to big-endian (network order); on this little-endian host, a swap.
pub const TO_BE: u8 = 0x08;
pub const OP_JA: u8 = 0x00;
pub const OP_JEQ: u8 = 0x10;
pub const OP_JNE: u8 = 0x50;
pub const OP_JGT: u8 = 0x20;
pub const OP_JLT: u8 = 0xa0;
pub const OP_CALL: u8 = 0x80;
pub const OP_EXIT: u8 = 0x90;

/// `long bpf_bind(struct bpf_sock_addr *ctx, struct sockaddr *addr, int addr_len)`.
pub const HELPER_BIND: i32 = 64;
/// `void *bpf_map_lookup_elem(struct bpf_map *map, const void *key)`.
pub const HELPER_MAP_LOOKUP_ELEM: i32 = 1;
/// The source register of a 64-bit immediate load that names a map by its fd.
pub const PSEUDO_MAP_FD: u8 = 1;
/// The immediate of an atomic instruction: plain add.
pub const ATOMIC_ADD: i32 = 0x00;

pub const R0: u8 = 0;
pub const R1: u8 = 1;
pub const R2: u8 = 2;
pub const R3: u8 = 3;
pub const R4: u8 = 4;
pub const R5: u8 = 5;
pub const R6: u8 = 6;
pub const R7: u8 = 7;
pub const R10: u8 = 10;

/// A jump target, placed once with [`Asm::label`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Label(usize);

/// Builds one program. Jumps refer to labels; [`Asm::finish`] resolves them.
#[derive(Debug, Default)]
pub struct Asm {
    insns: Vec<Insn>,
    /// Where each label was placed (instruction index).
    labels: Vec<Option<usize>>,
    /// (instruction index, label) of every jump.
    jumps: Vec<(usize, Label)>,
}

impl Asm {
    pub fn new_label(&mut self) -> Label {
        self.labels.push(None);
        Label(self.labels.len() - 1)
    }

    /// Whether a jump goes to `label` (the verifier refuses unreachable instructions, so a
    /// block only some programs jump to is emitted only for those).
    pub fn is_used(&self, label: Label) -> bool {
        self.jumps.iter().any(|(_, l)| *l == label)
    }

    /// The next instruction is `label`'s target.
    pub fn label(&mut self, label: Label) {
        self.labels[label.0] = Some(self.insns.len());
    }

    fn push(&mut self, code: u8, dst: u8, src: u8, off: i16, imm: i32) {
        self.insns.push(Insn {
            code,
            regs: dst | src << 4,
            off,
            imm,
        });
    }

    /// `dst = src` (64 bit).
    pub fn mov64_reg(&mut self, dst: u8, src: u8) {
        self.push(CLASS_ALU64 | OP_MOV | SRC_X, dst, src, 0, 0);
    }

    /// `dst = imm` (64 bit, sign-extended).
    pub fn mov64_imm(&mut self, dst: u8, imm: i32) {
        self.push(CLASS_ALU64 | OP_MOV | SRC_K, dst, 0, 0, imm);
    }

    /// `wdst = imm` (32 bit, upper half zeroed).
    pub fn mov32_imm(&mut self, dst: u8, imm: u32) {
        self.push(CLASS_ALU | OP_MOV | SRC_K, dst, 0, 0, imm as i32);
    }

    /// `dst += imm` (64 bit).
    pub fn add64_imm(&mut self, dst: u8, imm: i32) {
        self.push(CLASS_ALU64 | OP_ADD | SRC_K, dst, 0, 0, imm);
    }

    /// `wdst &= imm` (32 bit).
    pub fn and32_imm(&mut self, dst: u8, imm: u32) {
        self.push(CLASS_ALU | OP_AND | SRC_K, dst, 0, 0, imm as i32);
    }

    /// `wdst = be16(wdst)`: a port as the context holds it (network order) in host order.
    pub fn be16(&mut self, dst: u8) {
        self.push(CLASS_ALU | OP_END | TO_BE, dst, 0, 0, 16);
    }

    /// `dst = map` (the map named by its fd, resolved by the kernel at load): two slots.
    pub fn load_map_fd(&mut self, dst: u8, fd: i32) {
        self.push(CLASS_LD | MODE_IMM | SIZE_DW, dst, PSEUDO_MAP_FD, 0, fd);
        self.push(0, 0, 0, 0, 0);
    }

    /// `lock *(u64 *)(dst + off) += src`.
    pub fn atomic_add64(&mut self, dst: u8, off: i16, src: u8) {
        self.push(CLASS_STX | MODE_ATOMIC | SIZE_DW, dst, src, off, ATOMIC_ADD);
    }

    /// `wdst = *(u32 *)(src + off)`.
    pub fn load32(&mut self, dst: u8, src: u8, off: i16) {
        self.push(CLASS_LDX | MODE_MEM | SIZE_W, dst, src, off, 0);
    }

    /// `dst = *(u64 *)(src + off)`.
    pub fn load64(&mut self, dst: u8, src: u8, off: i16) {
        self.push(CLASS_LDX | MODE_MEM | SIZE_DW, dst, src, off, 0);
    }

    /// `*(u32 *)(dst + off) = wsrc`. (The verifier refuses immediate stores into the context.)
    pub fn store32_reg(&mut self, dst: u8, off: i16, src: u8) {
        self.push(CLASS_STX | MODE_MEM | SIZE_W, dst, src, off, 0);
    }

    /// `*(u64 *)(dst + off) = imm` (stack only).
    pub fn store64_imm(&mut self, dst: u8, off: i16, imm: i32) {
        self.push(CLASS_ST | MODE_MEM | SIZE_DW, dst, 0, off, imm);
    }

    /// `*(u32 *)(dst + off) = imm` (stack only).
    pub fn store32_imm(&mut self, dst: u8, off: i16, imm: u32) {
        self.push(CLASS_ST | MODE_MEM | SIZE_W, dst, 0, off, imm as i32);
    }

    /// `*(u16 *)(dst + off) = imm` (stack only).
    pub fn store16_imm(&mut self, dst: u8, off: i16, imm: u16) {
        self.push(CLASS_ST | MODE_MEM | SIZE_H, dst, 0, off, i32::from(imm));
    }

    fn jump(&mut self, code: u8, dst: u8, imm: i32, to: Label) {
        self.jumps.push((self.insns.len(), to));
        self.push(code, dst, 0, 0, imm);
    }

    /// `if wdst == imm goto to` (32-bit compare: a 64-bit one would sign-extend the immediate,
    /// and an address whose last octet is >= 128 would never match).
    pub fn jeq32(&mut self, dst: u8, imm: u32, to: Label) {
        self.jump(CLASS_JMP32 | OP_JEQ | SRC_K, dst, imm as i32, to);
    }

    /// `if wdst != imm goto to` (32 bit).
    pub fn jne32(&mut self, dst: u8, imm: u32, to: Label) {
        self.jump(CLASS_JMP32 | OP_JNE | SRC_K, dst, imm as i32, to);
    }

    /// `if wdst < imm goto to` (32 bit, unsigned).
    pub fn jlt32(&mut self, dst: u8, imm: u32, to: Label) {
        self.jump(CLASS_JMP32 | OP_JLT | SRC_K, dst, imm as i32, to);
    }

    /// `if wdst > imm goto to` (32 bit, unsigned).
    pub fn jgt32(&mut self, dst: u8, imm: u32, to: Label) {
        self.jump(CLASS_JMP32 | OP_JGT | SRC_K, dst, imm as i32, to);
    }

    /// `if dst == imm goto to` (64 bit; for helper results).
    pub fn jeq64(&mut self, dst: u8, imm: i32, to: Label) {
        self.jump(CLASS_JMP | OP_JEQ | SRC_K, dst, imm, to);
    }

    /// `if dst != imm goto to` (64 bit; for helper results).
    pub fn jne64(&mut self, dst: u8, imm: i32, to: Label) {
        self.jump(CLASS_JMP | OP_JNE | SRC_K, dst, imm, to);
    }

    pub fn goto(&mut self, to: Label) {
        self.jump(CLASS_JMP | OP_JA, 0, 0, to);
    }

    pub fn call(&mut self, helper: i32) {
        self.push(CLASS_JMP | OP_CALL, 0, 0, 0, helper);
    }

    /// `r0 = verdict; exit`.
    pub fn exit_with(&mut self, verdict: i32) {
        self.mov64_imm(R0, verdict);
        self.push(CLASS_JMP | OP_EXIT, 0, 0, 0, 0);
    }

    /// Resolves every jump. Panics only on a bug in a program generator (a label used but never
    /// placed), which the unit tests of every generator would show.
    pub fn finish(mut self) -> Vec<Insn> {
        for (at, label) in &self.jumps {
            let target = self.labels[label.0].expect("jump to a label that was never placed");
            let off = target as isize - (*at as isize + 1);
            self.insns[*at].off = i16::try_from(off).expect("jump offset out of range");
        }
        self.insns
    }
}

// bpf(2) commands, program types and flags.
const BPF_MAP_CREATE: libc::c_long = 0;
const BPF_MAP_LOOKUP_ELEM: libc::c_long = 1;
const BPF_PROG_LOAD: libc::c_long = 5;
const BPF_MAP_TYPE_ARRAY: u32 = 2;
const BPF_PROG_ATTACH: libc::c_long = 8;
const BPF_PROG_GET_FD_BY_ID: libc::c_long = 13;
const BPF_PROG_QUERY: libc::c_long = 16;
pub const BPF_F_ALLOW_MULTI: u32 = 2;

/// `union bpf_attr` for BPF_PROG_LOAD, up to `expected_attach_type`.
#[repr(C)]
#[derive(Default)]
struct LoadAttr {
    prog_type: u32,
    insn_cnt: u32,
    insns: u64,
    license: u64,
    log_level: u32,
    log_size: u32,
    log_buf: u64,
    kern_version: u32,
    prog_flags: u32,
    prog_name: [u8; 16],
    prog_ifindex: u32,
    expected_attach_type: u32,
}

/// `union bpf_attr` for BPF_MAP_CREATE, up to `map_name`.
#[repr(C)]
#[derive(Default)]
struct MapCreateAttr {
    map_type: u32,
    key_size: u32,
    value_size: u32,
    max_entries: u32,
    map_flags: u32,
    inner_map_fd: u32,
    numa_node: u32,
    map_name: [u8; 16],
}

/// `union bpf_attr` for BPF_MAP_LOOKUP_ELEM.
#[repr(C)]
#[derive(Default)]
struct MapElemAttr {
    map_fd: u32,
    _pad: u32,
    key: u64,
    value: u64,
    flags: u64,
}

/// A one-slot array map holding a u64 that the programs add to (PrisonConnect's refusals)
/// and the parent reads.
#[derive(Debug)]
pub struct Counter(OwnedFd);

impl Counter {
    pub fn create(name: &str) -> std::io::Result<Self> {
        let mut map_name = [0u8; 16];
        for (dst, src) in map_name.iter_mut().take(15).zip(name.bytes()) {
            *dst = src;
        }
        let mut attr = MapCreateAttr {
            map_type: BPF_MAP_TYPE_ARRAY,
            key_size: 4,
            value_size: 8,
            max_entries: 1,
            map_name,
            ..MapCreateAttr::default()
        };
        let fd = bpf(BPF_MAP_CREATE, &mut attr)?;
        // SAFETY: BPF_MAP_CREATE returned a new fd that nothing else owns.
        Ok(Self(unsafe { OwnedFd::from_raw_fd(fd as i32) }))
    }

    /// The fd the programs name the map by (valid while `self` lives, which covers loading).
    pub fn fd(&self) -> i32 {
        self.0.as_raw_fd()
    }

    pub fn read(&self) -> std::io::Result<u64> {
        let key = 0u32;
        let mut value = 0u64;
        let mut attr = MapElemAttr {
            map_fd: self.0.as_raw_fd() as u32,
            key: &key as *const u32 as u64,
            value: &mut value as *mut u64 as u64,
            ..MapElemAttr::default()
        };
        bpf(BPF_MAP_LOOKUP_ELEM, &mut attr)?;
        Ok(value)
    }
}

/// `union bpf_attr` for BPF_PROG_ATTACH.
#[repr(C)]
#[derive(Default)]
struct AttachAttr {
    target_fd: u32,
    attach_bpf_fd: u32,
    attach_type: u32,
    attach_flags: u32,
    replace_bpf_fd: u32,
}

fn bpf<T>(cmd: libc::c_long, attr: &mut T) -> std::io::Result<libc::c_long> {
    // SAFETY: `attr` is a #[repr(C)] prefix of `union bpf_attr` for `cmd`, zero-padded, and its
    // size is passed; pointers inside it point to live buffers of the lengths given.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            cmd,
            attr as *mut T,
            std::mem::size_of::<T>() as libc::c_uint,
        )
    };
    if ret < 0 {
        Err(std::io::Error::last_os_error())
    } else {
        Ok(ret)
    }
}

/// Loads a program; on a verifier refusal the error carries the verifier's log. The log is
/// asked for only then: a large program's log of a successful load would overflow any buffer
/// of a sane size, which fails the load with ENOSPC.
pub fn load(
    prog_type: u32,
    expected_attach_type: u32,
    name: &str,
    insns: &[Insn],
) -> std::io::Result<OwnedFd> {
    match load_with_log(prog_type, expected_attach_type, name, insns, None) {
        Ok(fd) => Ok(fd),
        Err(_) => {
            let mut log = vec![0u8; 64 * 1024];
            load_with_log(prog_type, expected_attach_type, name, insns, Some(&mut log))
        }
    }
}

fn load_with_log(
    prog_type: u32,
    expected_attach_type: u32,
    name: &str,
    insns: &[Insn],
    log: Option<&mut Vec<u8>>,
) -> std::io::Result<OwnedFd> {
    const LICENSE: &CStr = c"GPL"; // bpf_bind is a GPL-only helper.
    let mut prog_name = [0u8; 16];
    for (dst, src) in prog_name.iter_mut().take(15).zip(name.bytes()) {
        *dst = src;
    }
    let mut attr = LoadAttr {
        prog_type,
        insn_cnt: insns.len() as u32,
        insns: insns.as_ptr() as u64,
        license: LICENSE.as_ptr() as u64,
        prog_name,
        expected_attach_type,
        ..LoadAttr::default()
    };
    if let Some(log) = &log {
        attr.log_level = 1;
        attr.log_size = log.len() as u32;
        attr.log_buf = log.as_ptr() as u64;
    }
    match bpf(BPF_PROG_LOAD, &mut attr) {
        // SAFETY: BPF_PROG_LOAD returned a new fd that nothing else owns.
        Ok(fd) => Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) }),
        Err(e) => {
            let log = log.map(|l| l.as_slice()).unwrap_or_default();
            let end = log.iter().position(|&b| b == 0).unwrap_or(log.len());
            let text = String::from_utf8_lossy(&log[..end]);
            let text = text.trim();
            if text.is_empty() {
                Err(e)
            } else {
                let last: Vec<&str> = text.lines().rev().take(6).collect();
                Err(std::io::Error::new(
                    e.kind(),
                    format!(
                        "{e}; verifier: {}",
                        last.into_iter().rev().collect::<Vec<_>>().join(" | ")
                    ),
                ))
            }
        }
    }
}

/// `union bpf_attr` for BPF_PROG_QUERY.
#[repr(C)]
#[derive(Default)]
struct QueryAttr {
    target_fd: u32,
    attach_type: u32,
    query_flags: u32,
    attach_flags: u32,
    prog_ids: u64,
    prog_cnt: u32,
    _pad: u32,
}

/// The ids of the programs attached to the cgroup `cgroup` (an open directory) at
/// `attach_type`, up to 64 of them. The tests check attachments from outside with it.
pub fn attached(cgroup: &impl AsRawFd, attach_type: u32) -> std::io::Result<Vec<u32>> {
    let mut ids = [0u32; 64];
    let mut attr = QueryAttr {
        target_fd: cgroup.as_raw_fd() as u32,
        attach_type,
        prog_ids: ids.as_mut_ptr() as u64,
        prog_cnt: ids.len() as u32,
        ..QueryAttr::default()
    };
    bpf(BPF_PROG_QUERY, &mut attr)?;
    Ok(ids[..(attr.prog_cnt as usize).min(ids.len())].to_vec())
}

/// Whether a program with this id is still loaded anywhere.
pub fn program_loaded(id: u32) -> bool {
    // `union bpf_attr` for BPF_PROG_GET_FD_BY_ID: prog_id, next_id, open_flags, fd_by_id_token_fd.
    let mut attr = [id, 0, 0, 0];
    match bpf(BPF_PROG_GET_FD_BY_ID, &mut attr) {
        Ok(fd) => {
            // SAFETY: BPF_PROG_GET_FD_BY_ID just returned this fd to us, and nothing else owns it.
            drop(unsafe { OwnedFd::from_raw_fd(fd as i32) });
            true
        }
        Err(_) => false,
    }
}

/// Attaches `prog` to the cgroup `cgroup` (an open directory) at `attach_type`.
pub fn attach(cgroup: &impl AsRawFd, prog: &impl AsRawFd, attach_type: u32) -> std::io::Result<()> {
    let mut attr = AttachAttr {
        target_fd: cgroup.as_raw_fd() as u32,
        attach_bpf_fd: prog.as_raw_fd() as u32,
        attach_type,
        // Programs of the cgroups above (systemd's IPAddressDeny, say) keep applying too.
        attach_flags: BPF_F_ALLOW_MULTI,
        ..AttachAttr::default()
    };
    bpf(BPF_PROG_ATTACH, &mut attr).map(drop)
}

/// Parent: loads `programs` and attaches them to the cgroup at `dir`. The attachments outlive
/// the program descriptors, which are closed on return, and end with the cgroup.
pub fn attach_programs(
    dir: &std::path::Path,
    programs: &[super::sockaddr::Program],
) -> Result<(), crate::jail::SetupError> {
    use crate::jail::SetupError;
    let cgroup = std::fs::File::open(dir)
        .map_err(|e| SetupError::new(format!("opening cgroup {}", dir.display()), e))?;
    for p in programs {
        let prog = load(p.prog_type, p.attach_type, p.name, &p.insns)
            .map_err(|e| SetupError::new(format!("loading BPF program {}", p.name), e))?;
        attach(&cgroup, &prog, p.attach_type).map_err(|e| {
            SetupError::new(
                format!(
                    "attaching BPF program {} to cgroup {}",
                    p.name,
                    dir.display()
                ),
                e,
            )
        })?;
    }
    Ok(())
}

/// The dry run of [`attach_programs`] (`apachectl -t`): loads each program, so the kernel's
/// verifier checks it, and closes it again without attaching it anywhere.
pub fn verify_programs(
    programs: &[super::sockaddr::Program],
) -> Result<usize, crate::jail::SetupError> {
    for p in programs {
        drop(
            load(p.prog_type, p.attach_type, p.name, &p.insns).map_err(|e| {
                crate::jail::SetupError::new(format!("loading BPF program {}", p.name), e)
            })?,
        );
    }
    Ok(programs.len())
}
