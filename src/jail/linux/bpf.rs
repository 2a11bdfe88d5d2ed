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

#[cfg(test)]
impl Insn {
    pub fn dst(&self) -> u8 {
        self.regs & 0xf
    }

    pub fn src(&self) -> u8 {
        self.regs >> 4
    }
}

// Instruction classes, sizes, modes and operations (linux/bpf_common.h, linux/bpf.h).
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
pub const MODE_MEM: u8 = 0x60;
pub const SRC_K: u8 = 0x00;
pub const SRC_X: u8 = 0x08;
pub const OP_ADD: u8 = 0x00;
pub const OP_AND: u8 = 0x50;
pub const OP_MOV: u8 = 0xb0;
pub const OP_JA: u8 = 0x00;
pub const OP_JEQ: u8 = 0x10;
pub const OP_JNE: u8 = 0x50;
pub const OP_CALL: u8 = 0x80;
pub const OP_EXIT: u8 = 0x90;

/// `long bpf_bind(struct bpf_sock_addr *ctx, struct sockaddr *addr, int addr_len)`.
pub const HELPER_BIND: i32 = 64;

pub const R0: u8 = 0;
pub const R1: u8 = 1;
pub const R2: u8 = 2;
pub const R3: u8 = 3;
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
const BPF_PROG_LOAD: libc::c_long = 5;
const BPF_PROG_ATTACH: libc::c_long = 8;
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

/// Loads a program; on a verifier refusal the error carries the verifier's log.
pub fn load(
    prog_type: u32,
    expected_attach_type: u32,
    name: &str,
    insns: &[Insn],
) -> std::io::Result<OwnedFd> {
    const LICENSE: &CStr = c"GPL"; // bpf_bind is a GPL-only helper.
    let mut log = vec![0u8; 64 * 1024];
    let mut prog_name = [0u8; 16];
    for (dst, src) in prog_name.iter_mut().take(15).zip(name.bytes()) {
        *dst = src;
    }
    let mut attr = LoadAttr {
        prog_type,
        insn_cnt: insns.len() as u32,
        insns: insns.as_ptr() as u64,
        license: LICENSE.as_ptr() as u64,
        log_level: 1,
        log_size: log.len() as u32,
        log_buf: log.as_mut_ptr() as u64,
        prog_name,
        expected_attach_type,
        ..LoadAttr::default()
    };
    match bpf(BPF_PROG_LOAD, &mut attr) {
        // SAFETY: BPF_PROG_LOAD returned a new fd that nothing else owns.
        Ok(fd) => Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) }),
        Err(e) => {
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
