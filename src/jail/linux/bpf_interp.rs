//! Tests only: an interpreter for exactly the eBPF subset [`super::bpf::Asm`] emits, with the
//! verifier's rules that matter for it (no immediate stores into the context, `sk` read-only,
//! every path ends in `exit` with r0 0 or 1, clobbered argument registers unusable after a
//! call, a map value used only after its null check). Anything else is a test failure, so a program using an instruction this interpreter
//! does not know cannot pass its tests by accident.

use super::bpf::*;

/// A register's value: a number or a pointer into one of the program's memory regions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Value {
    Scalar(u64),
    Ctx(i64),
    Sock(i64),
    Stack(i64),
    /// A map, loaded by its fd.
    Map(i32),
    /// What `bpf_map_lookup_elem` returns: a pointer to the counter, not yet null-checked.
    CounterOrNull,
    /// The counter, after the null check.
    Counter,
    /// r1–r5 after a helper call, and every register never written.
    Unset,
}

const STACK: usize = 512;
/// The map fd the tests compile PrisonConnect's programs with.
pub const MAP_FD: i32 = 7;

/// The machine: a context, the socket `ctx->sk` points to (sock_addr programs), and a stack.
#[derive(Debug, Clone)]
pub struct Machine {
    pub ctx: Vec<u8>,
    pub sock: Vec<u8>,
    stack: Vec<u8>,
    /// Offset in `ctx` of the `sk` pointer, if the context has one.
    sk_field: Option<i64>,
    /// What `bpf_bind` returns.
    pub bind_result: i64,
    /// The address every `bpf_bind` call passed.
    pub bound: Vec<Vec<u8>>,
    /// The fd of the one map the programs may name (PrisonConnect's counter), and its value.
    pub map_fd: i32,
    pub counter: u64,
}

impl Machine {
    /// A `struct bpf_sock_addr` context (72 bytes, `sk` at 64) and its socket.
    pub fn sock_addr() -> Self {
        Self {
            ctx: vec![0; 72],
            sock: vec![0; 80],
            stack: vec![0; STACK],
            sk_field: Some(64),
            bind_result: 0,
            bound: Vec::new(),
            map_fd: MAP_FD,
            counter: 0,
        }
    }

    /// A `struct bpf_sock` context (sock_create).
    #[cfg(test)]
    pub fn sock() -> Self {
        Self {
            ctx: vec![0; 80],
            sock: Vec::new(),
            stack: vec![0; STACK],
            sk_field: None,
            bind_result: 0,
            bound: Vec::new(),
            map_fd: MAP_FD,
            counter: 0,
        }
    }

    pub fn set(region: &mut [u8], off: usize, bytes: &[u8]) {
        region[off..off + bytes.len()].copy_from_slice(bytes);
    }

    pub fn get(region: &[u8], off: usize, len: usize) -> Vec<u8> {
        region[off..off + len].to_vec()
    }

    fn region(&mut self, v: Value, off: i16, len: usize, write: bool) -> (&mut [u8], usize) {
        let (region, base): (&mut [u8], i64) = match v {
            Value::Ctx(b) => (&mut self.ctx, b),
            Value::Sock(b) => {
                assert!(!write, "the verifier refuses writes to sk");
                (&mut self.sock, b)
            }
            Value::Stack(b) => (&mut self.stack, b),
            other => panic!("memory access through {other:?}"),
        };
        let at = base + i64::from(off);
        assert!(
            at >= 0 && at as usize + len <= region.len() && at as usize % len == 0,
            "access of {len} bytes at {at} out of bounds or misaligned"
        );
        (region, at as usize)
    }

    fn load(&mut self, v: Value, off: i16, len: usize) -> Value {
        if let (Value::Ctx(0), Some(sk)) = (v, self.sk_field) {
            if i64::from(off) == sk {
                assert_eq!(len, 8, "sk is loaded as a whole pointer");
                return Value::Sock(0);
            }
        }
        let (region, at) = self.region(v, off, len, false);
        let mut bytes = [0u8; 8];
        bytes[..len].copy_from_slice(&region[at..at + len]);
        Value::Scalar(u64::from_le_bytes(bytes))
    }

    fn store(&mut self, v: Value, off: i16, len: usize, value: u64) {
        if let (Value::Ctx(_), Some(sk)) = (v, self.sk_field) {
            assert!(i64::from(off) < sk, "sk is read-only");
        }
        let (region, at) = self.region(v, off, len, true);
        region[at..at + len].copy_from_slice(&value.to_le_bytes()[..len]);
    }

    /// Runs `insns` and returns the verdict (true: allow).
    pub fn run(&mut self, insns: &[Insn]) -> bool {
        let mut r = [Value::Unset; 11];
        r[1] = Value::Ctx(0);
        r[10] = Value::Stack(STACK as i64);
        let scalar = |v: Value| match v {
            Value::Scalar(s) => s,
            other => panic!("arithmetic or compare on {other:?}"),
        };
        let mut pc = 0usize;
        for _ in 0..4096 {
            let insn = *insns
                .get(pc)
                .unwrap_or_else(|| panic!("fell off the end at {pc}"));
            let (dst, src) = (insn.dst() as usize, insn.src() as usize);
            assert!(dst <= 10 && src <= 10, "bad register in {insn:?}");
            let size = match insn.code & 0x18 {
                SIZE_W => 4,
                SIZE_H => 2,
                SIZE_DW => 8,
                _ => 1,
            };
            let mut next = pc + 1;
            let jump = |taken: bool| {
                if taken {
                    let to = pc as i64 + 1 + i64::from(insn.off);
                    assert!(
                        to >= 0 && (to as usize) < insns.len(),
                        "jump out of the program"
                    );
                    to as usize
                } else {
                    pc + 1
                }
            };
            match insn.code {
                c if c == CLASS_ALU64 | OP_MOV | SRC_X => r[dst] = r[src],
                c if c == CLASS_ALU64 | OP_MOV | SRC_K => {
                    r[dst] = Value::Scalar(i64::from(insn.imm) as u64)
                }
                c if c == CLASS_ALU | OP_MOV | SRC_K => {
                    r[dst] = Value::Scalar(u64::from(insn.imm as u32))
                }
                c if c == CLASS_ALU | OP_AND | SRC_K => {
                    r[dst] = Value::Scalar(u64::from(scalar(r[dst]) as u32 & insn.imm as u32))
                }
                c if c == CLASS_ALU64 | OP_ADD | SRC_K => {
                    r[dst] = match r[dst] {
                        Value::Stack(b) => Value::Stack(b + i64::from(insn.imm)),
                        Value::Scalar(s) => Value::Scalar(s.wrapping_add(insn.imm as i64 as u64)),
                        other => panic!("add to {other:?}"),
                    }
                }
                c if c == CLASS_ALU | OP_END | TO_BE => {
                    assert_eq!(insn.imm, 16, "only 16-bit swaps");
                    r[dst] = Value::Scalar(u64::from((scalar(r[dst]) as u16).swap_bytes()))
                }
                c if c == CLASS_LD | MODE_IMM | SIZE_DW => {
                    assert_eq!(insn.src(), PSEUDO_MAP_FD, "only map fds are loaded");
                    let second = insns.get(pc + 1).expect("the second half of a 64-bit load");
                    assert_eq!(
                        *second,
                        Insn {
                            code: 0,
                            regs: 0,
                            off: 0,
                            imm: 0
                        }
                    );
                    r[dst] = Value::Map(insn.imm);
                    next = pc + 2;
                }
                c if c == CLASS_STX | MODE_ATOMIC | SIZE_DW => {
                    assert_eq!(insn.imm, ATOMIC_ADD, "only atomic add");
                    assert_eq!(r[dst], Value::Counter, "atomic add to {:?}", r[dst]);
                    assert_eq!(insn.off, 0, "the counter is one u64");
                    self.counter = self.counter.wrapping_add(scalar(r[src]));
                }
                c if c == CLASS_LDX | MODE_MEM | (insn.code & 0x18) => {
                    r[dst] = self.load(r[src], insn.off, size);
                    if size == 4 || size == 2 {
                        assert!(matches!(r[dst], Value::Scalar(_)));
                    }
                }
                c if c == CLASS_STX | MODE_MEM | (insn.code & 0x18) => {
                    let value = scalar(r[src]);
                    self.store(r[dst], insn.off, size, value);
                }
                c if c == CLASS_ST | MODE_MEM | (insn.code & 0x18) => {
                    assert!(
                        matches!(r[dst], Value::Stack(_)),
                        "the verifier refuses immediate stores outside the stack"
                    );
                    self.store(r[dst], insn.off, size, insn.imm as i64 as u64);
                }
                c if c == CLASS_JMP32 | OP_JEQ | SRC_K => {
                    next = jump(scalar(r[dst]) as u32 == insn.imm as u32)
                }
                c if c == CLASS_JMP32 | OP_JNE | SRC_K => {
                    next = jump(scalar(r[dst]) as u32 != insn.imm as u32)
                }
                c if c == CLASS_JMP32 | OP_JLT | SRC_K => {
                    next = jump((scalar(r[dst]) as u32) < insn.imm as u32)
                }
                c if c == CLASS_JMP32 | OP_JGT | SRC_K => {
                    next = jump(scalar(r[dst]) as u32 > insn.imm as u32)
                }
                c if c == CLASS_JMP | OP_JEQ | SRC_K && r[dst] == Value::CounterOrNull => {
                    // The lookup of key 0 in a one-slot array never fails; the check is for
                    // the verifier, which refuses the dereference without it.
                    assert_eq!(insn.imm, 0, "null check against {}", insn.imm);
                    r[dst] = Value::Counter;
                }
                c if c == CLASS_JMP | OP_JNE | SRC_K => {
                    next = jump(scalar(r[dst]) != insn.imm as i64 as u64)
                }
                c if c == CLASS_JMP | OP_JEQ | SRC_K => {
                    next = jump(scalar(r[dst]) == insn.imm as i64 as u64)
                }
                c if c == CLASS_JMP | OP_JA => next = jump(true),
                c if c == CLASS_JMP | OP_CALL && insn.imm == HELPER_MAP_LOOKUP_ELEM => {
                    assert_eq!(r[1], Value::Map(self.map_fd), "lookup in an unknown map");
                    let Value::Stack(at) = r[2] else {
                        panic!("map key is not on the stack: {:?}", r[2])
                    };
                    assert_eq!(
                        Self::get(&self.stack, at as usize, 4),
                        [0; 4],
                        "the counter is key 0"
                    );
                    r[0] = Value::CounterOrNull;
                    for reg in &mut r[1..=5] {
                        *reg = Value::Unset;
                    }
                }
                c if c == CLASS_JMP | OP_CALL => {
                    assert_eq!(insn.imm, HELPER_BIND, "unknown helper");
                    assert_eq!(r[1], Value::Ctx(0), "bpf_bind needs the context");
                    let len = scalar(r[3]) as usize;
                    let Value::Stack(at) = r[2] else {
                        panic!("bpf_bind address is not on the stack: {:?}", r[2])
                    };
                    self.bound.push(Self::get(&self.stack, at as usize, len));
                    r[0] = Value::Scalar(self.bind_result as u64);
                    for reg in &mut r[1..=5] {
                        *reg = Value::Unset;
                    }
                }
                c if c == CLASS_JMP | OP_EXIT => {
                    return match r[0] {
                        Value::Scalar(0) => false,
                        Value::Scalar(1) => true,
                        other => panic!("exit with r0 = {other:?}"),
                    };
                }
                _ => panic!("instruction the interpreter does not know: {insn:?}"),
            }
            pc = next;
        }
        panic!("no exit within 4096 steps")
    }
}
