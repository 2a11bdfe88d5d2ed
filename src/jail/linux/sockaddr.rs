//! PrisonIP's cgroup-BPF programs, generated from the prison's addresses: a pure function from
//! [`PrisonIp`] to instructions, so every branch is tested without a kernel (see the tests at
//! the end, which run the programs in an interpreter for exactly the instructions used here).
//!
//! What they enforce for every process in the prison's cgroup:
//! - `socket`: only TCP and UDP of a family that has a PrisonIP address; never `SOCK_RAW`.
//! - `bind`: the prison address is allowed, the wildcard is rewritten to it, anything else is
//!   refused (EPERM).
//! - `connect`: the socket is bound to the prison address first (`bpf_bind`, port chosen at
//!   connect time), so that is its source; a loopback destination is rewritten to the prison
//!   address, as on FreeBSD (the host's loopback services are not the prison's).
//! - UDP `sendmsg` without a connection: the source is set to the prison address, loopback
//!   destinations rewritten as for connect.
//! - IPv6: IPv4-mapped destinations are refused (they would bypass the IPv4 rules).
//! - PrisonConnect (`connect` and `sendmsg`): the destination must match one entry of the
//!   allow-list, else the call fails with EPERM and the refusal is counted in a map the parent
//!   reads. A loopback destination (127.0.0.0/8, 0.0.0.0; `::1`, `::`) matches only the list's
//!   loopback entries, and reaches the host's loopback only through them; unmatched, it is
//!   rewritten to the prison address as above and checked again as that address.
//!
//! A PrisonIP wildcard (`0.0.0.0`/`::`, possible only without PARANOID) leaves its family
//! unrestricted. The programs see only inet sockets; other families are seccomp's job.

use std::net::{Ipv4Addr, Ipv6Addr};

use super::bpf::{
    Asm, Insn, Label, HELPER_BIND, HELPER_MAP_LOOKUP_ELEM, R0, R1, R10, R2, R3, R4, R5, R6, R7,
};
use crate::config::{mask4, mask6, Destination, Network, PrisonIp};

// Program and attach types (linux/bpf.h).
pub const PROG_TYPE_CGROUP_SOCK: u32 = 9;
pub const PROG_TYPE_CGROUP_SOCK_ADDR: u32 = 18;
pub const ATTACH_INET_SOCK_CREATE: u32 = 2;
pub const ATTACH_INET4_BIND: u32 = 8;
pub const ATTACH_INET6_BIND: u32 = 9;
pub const ATTACH_INET4_CONNECT: u32 = 10;
pub const ATTACH_INET6_CONNECT: u32 = 11;
pub const ATTACH_UDP4_SENDMSG: u32 = 14;
pub const ATTACH_UDP6_SENDMSG: u32 = 15;

// struct bpf_sock_addr (the context of the bind/connect/sendmsg hooks).
const USER_IP4: i16 = 4;
const USER_IP6: i16 = 8;
const USER_PORT: i16 = 24;
const MSG_SRC_IP4: i16 = 40;
const MSG_SRC_IP6: i16 = 44;
const SK: i16 = 64;
// struct bpf_sock (the context of sock_create, and what `sk` points to).
const SOCK_FAMILY: i16 = 4;
const SOCK_TYPE: i16 = 8;
const SOCK_PROTOCOL: i16 = 12;
const SOCK_SRC_IP4: i16 = 24;
const SOCK_SRC_IP6: i16 = 28;

const ALLOW: i32 = 1;
const DENY: i32 = 0;

/// What one family may use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Family<A> {
    /// No PrisonIP address of this family: its sockets are refused.
    Refused,
    /// PrisonIP is this family's wildcard (not PARANOID): no restriction.
    Open,
    /// Only this address.
    Only(A),
}

fn v4(ip: &PrisonIp) -> Family<Ipv4Addr> {
    match ip.v4 {
        None => Family::Refused,
        Some(a) if a.is_unspecified() => Family::Open,
        Some(a) => Family::Only(a),
    }
}

fn v6(ip: &PrisonIp) -> Family<Ipv6Addr> {
    match ip.v6 {
        None => Family::Refused,
        Some(a) if a.is_unspecified() => Family::Open,
        Some(a) => Family::Only(a),
    }
}

/// A 4-byte group of an address as the context holds it (network order in memory), read as
/// the u32 a 32-bit load gives.
fn word(bytes: [u8; 4]) -> u32 {
    u32::from_ne_bytes(bytes)
}

fn words6(a: Ipv6Addr) -> [u32; 4] {
    let o = a.octets();
    [0, 1, 2, 3].map(|i| word([o[4 * i], o[4 * i + 1], o[4 * i + 2], o[4 * i + 3]]))
}

/// One program and where it goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Program {
    pub name: &'static str,
    pub prog_type: u32,
    pub attach_type: u32,
    pub insns: Vec<Insn>,
}

/// PrisonConnect, ready to compile: the allow-list and the fd of the map its refusals are
/// counted in (see [`super::bpf::Counter`]).
#[derive(Debug, Clone, Copy)]
pub struct Connect<'a> {
    pub list: &'a [Destination],
    pub counter: i32,
}

impl Connect<'_> {
    fn has(&self, version: IpVersion) -> bool {
        self.list.iter().any(|d| match d.network {
            Network::V4(..) => version == IpVersion::V4,
            Network::V6(..) => version == IpVersion::V6,
        })
    }

    fn v4(&self) -> (Vec<Entry>, Vec<Entry>) {
        let mut split = (Vec::new(), Vec::new());
        for d in self.list {
            if let Network::V4(net, prefix) = d.network {
                let entry = (
                    vec![word(net.octets())],
                    vec![word(mask4(prefix).to_be_bytes())],
                    ports(d),
                );
                if d.network.is_loopback() {
                    split.0.push(entry);
                } else {
                    split.1.push(entry);
                }
            }
        }
        split
    }

    fn v6(&self) -> (Vec<Entry>, Vec<Entry>) {
        let mut split = (Vec::new(), Vec::new());
        for d in self.list {
            if let Network::V6(net, prefix) = d.network {
                let entry = (
                    words6(net).to_vec(),
                    words6(Ipv6Addr::from(mask6(prefix))).to_vec(),
                    ports(d),
                );
                if d.network.is_loopback() {
                    split.0.push(entry);
                } else {
                    split.1.push(entry);
                }
            }
        }
        split
    }
}

/// A port range in host order; (0, 0xffff) is every port.
type Ports = (u32, u32);
/// (network, mask, ports): the address's 32-bit groups as the context holds them.
type Entry = (Vec<u32>, Vec<u32>, Ports);

fn ports(d: &Destination) -> Ports {
    d.ports
        .map_or((0, 0xffff), |p| (u32::from(p.first), u32::from(p.last)))
}

/// Every program the prison's cgroup carries for `ip`, and with PrisonConnect its allow-list.
pub fn programs(ip: &PrisonIp, connect: Option<&Connect>) -> Vec<Program> {
    let addr = |name, attach_type, insns| Program {
        name,
        prog_type: PROG_TYPE_CGROUP_SOCK_ADDR,
        attach_type,
        insns,
    };
    vec![
        Program {
            name: "prison_socket",
            prog_type: PROG_TYPE_CGROUP_SOCK,
            attach_type: ATTACH_INET_SOCK_CREATE,
            insns: sock_create(ip),
        },
        addr("prison_bind4", ATTACH_INET4_BIND, bind4(v4(ip))),
        addr("prison_bind6", ATTACH_INET6_BIND, bind6(v6(ip))),
        addr(
            "prison_connect4",
            ATTACH_INET4_CONNECT,
            connect4(v4(ip), connect),
        ),
        addr(
            "prison_connect6",
            ATTACH_INET6_CONNECT,
            connect6(v6(ip), connect),
        ),
        addr(
            "prison_sendmsg4",
            ATTACH_UDP4_SENDMSG,
            sendmsg4(v4(ip), connect),
        ),
        addr(
            "prison_sendmsg6",
            ATTACH_UDP6_SENDMSG,
            sendmsg6(v6(ip), connect),
        ),
    ]
}

fn verdict_only(verdict: i32) -> Vec<Insn> {
    let mut asm = Asm::default();
    asm.exit_with(verdict);
    asm.finish()
}

/// The common end of every program: `allow: r0 = 1; exit; deny: r0 = 0; exit`.
fn verdicts(asm: &mut Asm, allow: Label, deny: Label) {
    asm.label(allow);
    asm.exit_with(ALLOW);
    asm.label(deny);
    asm.exit_with(DENY);
}

/// The end of a program that checks destinations: as [`verdicts`], and before `deny` the
/// `refuse` path (a destination PrisonConnect does not list), which counts the refusal first.
/// Each block only if something jumps to it: the verifier refuses unreachable code.
fn verdicts_counted(asm: &mut Asm, allow: Label, deny: Label, refuse: Label, counter: Option<i32>) {
    if asm.is_used(allow) {
        asm.label(allow);
        asm.exit_with(ALLOW);
    }
    let refused = asm.is_used(refuse);
    if !refused && !asm.is_used(deny) {
        return;
    }
    asm.label(refuse);
    if let (true, Some(fd)) = (refused, counter) {
        // lock counter[0] += 1; the context (r1) is not needed any more.
        asm.store32_imm(R10, -4, 0);
        asm.load_map_fd(R1, fd);
        asm.mov64_reg(R2, R10);
        asm.add64_imm(R2, -4);
        asm.call(HELPER_MAP_LOOKUP_ELEM);
        asm.jeq64(R0, 0, deny);
        asm.mov64_imm(R1, 1);
        asm.atomic_add64(R0, 0, R1);
    }
    asm.label(deny);
    asm.exit_with(DENY);
}

/// `r6 = the destination port in host order`.
fn load_port(asm: &mut Asm) {
    asm.load32(R6, R1, USER_PORT);
    asm.be16(R6);
}

/// `if r6 (the port) is in `ports` goto ok`, else fall through.
fn match_ports(asm: &mut Asm, (first, last): Ports, ok: Label) {
    if (first, last) == (0, 0xffff) {
        asm.goto(ok);
        return;
    }
    let next = asm.new_label();
    if first == last {
        asm.jne32(R6, first, next);
    } else {
        asm.jlt32(R6, first, next);
        asm.jgt32(R6, last, next);
    }
    asm.goto(ok);
    asm.label(next);
}

/// `if (addr & mask) == net && port in ports goto ok` for one 32-bit group in `reg` (kept).
fn match_word(asm: &mut Asm, reg: u8, net: u32, mask: u32, next: Label) {
    match mask {
        0 => {}
        u32::MAX => asm.jne32(reg, net, next),
        _ => {
            asm.mov64_reg(R7, reg);
            asm.and32_imm(R7, mask);
            asm.jne32(R7, net, next);
        }
    }
}

/// `goto ok` if the destination (in `regs`, one per 32-bit group) and the port (r6) match one
/// of `entries`. Returns whether the last one matches everything, so nothing after it is
/// reachable (the verifier refuses unreachable code).
fn match_entries(asm: &mut Asm, family: IpVersion, entries: &[Entry], ok: Label) -> bool {
    for (net, mask, ports) in entries {
        let next = asm.new_label();
        // Each entry reads the destination again from the context (where a rewrite stored
        // it): with nothing carried from one entry to the next, the verifier's states at
        // every `next` are the same and it prunes them; carried registers with bounds learnt
        // from earlier entries made it walk every combination (a 256-entry list ran into its
        // limit of a million instructions).
        load_destination(asm, family);
        for ((reg, net), mask) in DESTINATION_REGS.iter().zip(net).zip(mask) {
            match_word(asm, *reg, *net, *mask, next);
        }
        if *ports != (0, 0xffff) {
            load_port(asm);
        }
        match_ports(asm, *ports, ok);
        asm.label(next);
        if mask.iter().all(|m| *m == 0) && *ports == (0, 0xffff) {
            return true;
        }
    }
    false
}

/// Which of a program's address fields a check reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum IpVersion {
    V4,
    V6,
}

/// The registers the destination's 32-bit groups are loaded into (IPv4: the first).
const DESTINATION_REGS: [u8; 4] = [R2, R3, R4, R5];

fn load_destination(asm: &mut Asm, family: IpVersion) {
    match family {
        IpVersion::V4 => asm.load32(R2, R1, USER_IP4),
        IpVersion::V6 => {
            for (i, reg) in DESTINATION_REGS.iter().enumerate() {
                asm.load32(*reg, R1, USER_IP6 + 4 * i as i16);
            }
        }
    }
}

/// PrisonConnect for IPv4: falls through if the destination (user_ip4) is allowed, jumps to
/// `refuse` if not. With `jip` (the prison's address) an unmatched loopback destination is
/// rewritten to it and checked as that; without (PrisonIP 0.0.0.0), it is refused.
fn check_destination4(asm: &mut Asm, jip: Option<u32>, connect: &Connect, refuse: Label) {
    let (loopback_entries, entries) = connect.v4();
    let (ok, loopback, outside) = (asm.new_label(), asm.new_label(), asm.new_label());
    load_destination(asm, IpVersion::V4);
    asm.jeq32(R2, 0, loopback);
    asm.mov64_reg(R3, R2);
    asm.and32_imm(R3, word([0xff, 0, 0, 0]));
    asm.jne32(R3, word([127, 0, 0, 0]), outside);
    asm.label(loopback);
    if !match_entries(asm, IpVersion::V4, &loopback_entries, ok) {
        match jip {
            Some(jip) => {
                asm.mov32_imm(R2, jip);
                asm.store32_reg(R1, USER_IP4, R2);
            }
            None => asm.goto(refuse),
        }
    }
    asm.label(outside);
    if !match_entries(asm, IpVersion::V4, &entries, ok) {
        asm.goto(refuse);
    }
    asm.label(ok);
}

/// PrisonConnect for IPv6, as [`check_destination4`]: IPv4-mapped destinations are refused,
/// `::1` and `::` are the loopback.
fn check_destination6(asm: &mut Asm, jip: Option<[u32; 4]>, connect: &Connect, refuse: Label) {
    let (loopback_entries, entries) = connect.v6();
    let (ok, loopback, outside) = (asm.new_label(), asm.new_label(), asm.new_label());
    let regs = DESTINATION_REGS;
    load_destination(asm, IpVersion::V6);
    asm.jne32(R2, 0, outside);
    asm.jne32(R3, 0, outside);
    asm.jeq32(R4, word([0, 0, 0xff, 0xff]), refuse);
    asm.jne32(R4, 0, outside);
    asm.jeq32(R5, 0, loopback);
    asm.jne32(R5, word([0, 0, 0, 1]), outside);
    asm.label(loopback);
    let always = match_entries(asm, IpVersion::V6, &loopback_entries, ok);
    match jip.filter(|_| !always) {
        Some(jip) => {
            for (reg, w) in regs.iter().zip(jip) {
                asm.mov32_imm(*reg, w);
            }
            for (i, reg) in regs.iter().enumerate() {
                asm.store32_reg(R1, USER_IP6 + 4 * i as i16, *reg);
            }
        }
        None if !always => asm.goto(refuse),
        None => {}
    }
    asm.label(outside);
    if !match_entries(asm, IpVersion::V6, &entries, ok) {
        asm.goto(refuse);
    }
    asm.label(ok);
}

/// `socket()`: TCP or UDP of a family with an address; never raw.
fn sock_create(ip: &PrisonIp) -> Vec<Insn> {
    let mut asm = Asm::default();
    let (check, allow, deny) = (asm.new_label(), asm.new_label(), asm.new_label());
    asm.load32(R2, R1, SOCK_FAMILY);
    for (family, open) in [
        (libc::AF_INET, v4(ip) != Family::Refused),
        (libc::AF_INET6, v6(ip) != Family::Refused),
    ] {
        if open {
            asm.jeq32(R2, family as u32, check);
        }
    }
    asm.goto(deny);
    asm.label(check);
    // SOCK_RAW with IPPROTO_TCP or UDP exists, so the type is checked on its own.
    asm.load32(R2, R1, SOCK_TYPE);
    asm.jeq32(R2, libc::SOCK_RAW as u32, deny);
    // The kernel has resolved protocol 0 by now: ICMP, SCTP, MPTCP, UDP-Lite stay out.
    asm.load32(R2, R1, SOCK_PROTOCOL);
    asm.jeq32(R2, libc::IPPROTO_TCP as u32, allow);
    asm.jeq32(R2, libc::IPPROTO_UDP as u32, allow);
    asm.goto(deny);
    verdicts(&mut asm, allow, deny);
    asm.finish()
}

fn bind4(family: Family<Ipv4Addr>) -> Vec<Insn> {
    let jip = match family {
        Family::Refused => return verdict_only(DENY),
        Family::Open => return verdict_only(ALLOW),
        Family::Only(a) => word(a.octets()),
    };
    let mut asm = Asm::default();
    let (allow, deny) = (asm.new_label(), asm.new_label());
    asm.load32(R2, R1, USER_IP4);
    asm.jeq32(R2, jip, allow);
    asm.jne32(R2, 0, deny);
    asm.mov32_imm(R2, jip);
    asm.store32_reg(R1, USER_IP4, R2);
    asm.goto(allow);
    verdicts(&mut asm, allow, deny);
    asm.finish()
}

fn bind6(family: Family<Ipv6Addr>) -> Vec<Insn> {
    let jip = match family {
        Family::Refused => return verdict_only(DENY),
        Family::Open => return verdict_only(ALLOW),
        Family::Only(a) => words6(a),
    };
    let mut asm = Asm::default();
    let (allow, deny, not_jip) = (asm.new_label(), asm.new_label(), asm.new_label());
    for (i, w) in jip.iter().enumerate() {
        asm.load32(R2, R1, USER_IP6 + 4 * i as i16);
        asm.jne32(R2, *w, not_jip);
    }
    asm.goto(allow);
    asm.label(not_jip);
    for i in 0..4 {
        asm.load32(R2, R1, USER_IP6 + 4 * i);
        asm.jne32(R2, 0, deny);
    }
    store6(&mut asm, USER_IP6, jip);
    asm.goto(allow);
    verdicts(&mut asm, allow, deny);
    asm.finish()
}

/// `*(u32[4] *)(r1 + off) = addr`, through r2 (the context takes no immediate stores).
fn store6(asm: &mut Asm, off: i16, addr: [u32; 4]) {
    for (i, w) in addr.iter().enumerate() {
        asm.mov32_imm(R2, *w);
        asm.store32_reg(R1, off + 4 * i as i16, R2);
    }
}

/// A destination in 127.0.0.0/8, or 0.0.0.0 (which the kernel takes for "this host"), becomes
/// the prison address.
fn rewrite_loopback4(asm: &mut Asm, jip: u32) {
    let (done, rewrite) = (asm.new_label(), asm.new_label());
    asm.load32(R2, R1, USER_IP4);
    asm.jeq32(R2, 0, rewrite);
    asm.and32_imm(R2, word([0xff, 0, 0, 0]));
    asm.jne32(R2, word([127, 0, 0, 0]), done);
    asm.label(rewrite);
    asm.mov32_imm(R2, jip);
    asm.store32_reg(R1, USER_IP4, R2);
    asm.label(done);
}

/// A destination `::1`, or `::` (which the kernel takes for `::1`), becomes the prison address;
/// an IPv4-mapped destination is refused.
fn rewrite_loopback6(asm: &mut Asm, jip: [u32; 4], deny: Label) {
    let (done, not_mapped, rewrite) = (asm.new_label(), asm.new_label(), asm.new_label());
    asm.load32(R2, R1, USER_IP6);
    asm.jne32(R2, 0, done);
    asm.load32(R2, R1, USER_IP6 + 4);
    asm.jne32(R2, 0, done);
    asm.load32(R2, R1, USER_IP6 + 8);
    asm.jne32(R2, word([0, 0, 0xff, 0xff]), not_mapped);
    asm.goto(deny);
    asm.label(not_mapped);
    asm.jne32(R2, 0, done);
    asm.load32(R2, R1, USER_IP6 + 12);
    asm.jeq32(R2, 0, rewrite);
    asm.jne32(R2, word([0, 0, 0, 1]), done);
    asm.label(rewrite);
    store6(asm, USER_IP6, jip);
    asm.label(done);
}

/// What a connect or sendmsg program of a family does: its address (`None`: PrisonIP is the
/// wildcard), or a fixed verdict.
enum Destinations<A> {
    Verdict(i32),
    /// PrisonConnect lists nothing of this family.
    RefuseAll(i32),
    Check(Option<A>),
}

fn destinations<A: Copy>(
    family: Family<A>,
    connect: Option<&Connect>,
    version: IpVersion,
) -> Destinations<A> {
    match (family, connect) {
        (Family::Refused, _) => Destinations::Verdict(DENY),
        (_, Some(c)) if !c.has(version) => Destinations::RefuseAll(c.counter),
        (Family::Open, None) => Destinations::Verdict(ALLOW),
        (Family::Open, Some(_)) => Destinations::Check(None),
        (Family::Only(a), _) => Destinations::Check(Some(a)),
    }
}

/// The destination part of connect4 and sendmsg4: PrisonConnect's check, or without it the
/// loopback rewrite alone.
fn destination4(asm: &mut Asm, jip: Option<u32>, connect: Option<&Connect>, refuse: Label) {
    match (connect, jip) {
        (Some(connect), jip) => check_destination4(asm, jip, connect, refuse),
        (None, Some(jip)) => rewrite_loopback4(asm, jip),
        (None, None) => {}
    }
}

fn destination6(
    asm: &mut Asm,
    jip: Option<[u32; 4]>,
    connect: Option<&Connect>,
    refuse: Label,
    deny: Label,
) {
    match (connect, jip) {
        (Some(connect), jip) => check_destination6(asm, jip, connect, refuse),
        (None, Some(jip)) => rewrite_loopback6(asm, jip, deny),
        (None, None) => {}
    }
}

/// The program of a family PrisonConnect lists nothing of: every call refused and counted.
fn refuse_all(counter: i32) -> Vec<Insn> {
    let mut asm = Asm::default();
    let (allow, deny, refuse) = (asm.new_label(), asm.new_label(), asm.new_label());
    asm.goto(refuse);
    verdicts_counted(&mut asm, allow, deny, refuse, Some(counter));
    asm.finish()
}

fn connect4(family: Family<Ipv4Addr>, connect: Option<&Connect>) -> Vec<Insn> {
    let jip = match destinations(family, connect, IpVersion::V4) {
        Destinations::Verdict(v) => return verdict_only(v),
        Destinations::RefuseAll(counter) => return refuse_all(counter),
        Destinations::Check(a) => a.map(|a| word(a.octets())),
    };
    let mut asm = Asm::default();
    let (allow, deny, refuse) = (asm.new_label(), asm.new_label(), asm.new_label());
    destination4(&mut asm, jip, connect, refuse);
    if let Some(jip) = jip {
        // Already bound to the prison address (an explicit bind, which bind4 allowed).
        asm.load64(R2, R1, SK);
        asm.load32(R3, R2, SOCK_SRC_IP4);
        asm.jeq32(R3, jip, allow);
        // struct sockaddr_in { AF_INET, port 0, JIP } on the stack; port 0 lets connect pick it.
        asm.store64_imm(R10, -16, 0);
        asm.store64_imm(R10, -8, 0);
        asm.store16_imm(R10, -16, libc::AF_INET as u16);
        asm.store32_imm(R10, -12, jip);
        bind_call(&mut asm, 16, 16, deny);
    }
    asm.goto(allow);
    verdicts_counted(&mut asm, allow, deny, refuse, connect.map(|c| c.counter));
    asm.finish()
}

/// `if bpf_bind(ctx, r10 - size, len) != 0 goto deny` (r1 still holds the context).
fn bind_call(asm: &mut Asm, size: i16, len: i32, deny: Label) {
    asm.mov64_reg(R2, R10);
    asm.add64_imm(R2, -i32::from(size));
    asm.mov64_imm(R3, len);
    asm.call(HELPER_BIND);
    asm.jne64(R0, 0, deny);
}

fn connect6(family: Family<Ipv6Addr>, connect: Option<&Connect>) -> Vec<Insn> {
    let jip = match destinations(family, connect, IpVersion::V6) {
        Destinations::Verdict(v) => return verdict_only(v),
        Destinations::RefuseAll(counter) => return refuse_all(counter),
        Destinations::Check(a) => a.map(words6),
    };
    let mut asm = Asm::default();
    let (allow, deny, refuse) = (asm.new_label(), asm.new_label(), asm.new_label());
    destination6(&mut asm, jip, connect, refuse, deny);
    if let Some(jip) = jip {
        let bind = asm.new_label();
        asm.load64(R2, R1, SK);
        for (i, w) in jip.iter().enumerate() {
            asm.load32(R3, R2, SOCK_SRC_IP6 + 4 * i as i16);
            asm.jne32(R3, *w, bind);
        }
        asm.goto(allow);
        asm.label(bind);
        // struct sockaddr_in6 { AF_INET6, port 0, flowinfo 0, JIP, scope 0 }: 28 bytes in 32.
        for off in [-32, -24, -16, -8] {
            asm.store64_imm(R10, off, 0);
        }
        asm.store16_imm(R10, -32, libc::AF_INET6 as u16);
        for (i, w) in jip.iter().enumerate() {
            asm.store32_imm(R10, -24 + 4 * i as i16, *w);
        }
        bind_call(&mut asm, 32, 28, deny);
    }
    asm.goto(allow);
    verdicts_counted(&mut asm, allow, deny, refuse, connect.map(|c| c.counter));
    asm.finish()
}

fn sendmsg4(family: Family<Ipv4Addr>, connect: Option<&Connect>) -> Vec<Insn> {
    let jip = match destinations(family, connect, IpVersion::V4) {
        Destinations::Verdict(v) => return verdict_only(v),
        Destinations::RefuseAll(counter) => return refuse_all(counter),
        Destinations::Check(a) => a.map(|a| word(a.octets())),
    };
    let mut asm = Asm::default();
    let (allow, deny, refuse) = (asm.new_label(), asm.new_label(), asm.new_label());
    destination4(&mut asm, jip, connect, refuse);
    if let Some(jip) = jip {
        // After IP_PKTINFO is parsed, so a cmsg cannot choose another source.
        asm.mov32_imm(R2, jip);
        asm.store32_reg(R1, MSG_SRC_IP4, R2);
    }
    asm.goto(allow);
    verdicts_counted(&mut asm, allow, deny, refuse, connect.map(|c| c.counter));
    asm.finish()
}

fn sendmsg6(family: Family<Ipv6Addr>, connect: Option<&Connect>) -> Vec<Insn> {
    let jip = match destinations(family, connect, IpVersion::V6) {
        Destinations::Verdict(v) => return verdict_only(v),
        Destinations::RefuseAll(counter) => return refuse_all(counter),
        Destinations::Check(a) => a.map(words6),
    };
    let mut asm = Asm::default();
    let (allow, deny, refuse) = (asm.new_label(), asm.new_label(), asm.new_label());
    destination6(&mut asm, jip, connect, refuse, deny);
    if let Some(jip) = jip {
        store6(&mut asm, MSG_SRC_IP6, jip);
    }
    asm.goto(allow);
    verdicts_counted(&mut asm, allow, deny, refuse, connect.map(|c| c.counter));
    asm.finish()
}

#[cfg(test)]
mod tests {
    use super::super::bpf_interp::{Machine, MAP_FD};
    use super::*;

    const JIP4: &str = "192.0.2.10";
    /// Last octet >= 128: a sign-extending 64-bit compare would never match it.
    const JIP4_HIGH: &str = "192.0.2.200";
    const JIP6: &str = "2001:db8::10";
    /// Every 32-bit group >= 0x80000000 in memory order.
    const JIP6_HIGH: &str = "f001:db8:8000:0:8000::ff80";

    fn ip(addrs: &[&str]) -> PrisonIp {
        PrisonIp::parse(addrs, false).expect("test address")
    }

    fn program(ip: &PrisonIp, attach_type: u32) -> Vec<Insn> {
        programs(ip, None)
            .into_iter()
            .find(|p| p.attach_type == attach_type)
            .expect("program")
            .insns
    }

    fn v4b(a: &str) -> [u8; 4] {
        a.parse::<Ipv4Addr>().expect(a).octets()
    }

    fn v6b(a: &str) -> [u8; 16] {
        a.parse::<Ipv6Addr>().expect(a).octets()
    }

    fn sockaddr_in(a: &str) -> Vec<u8> {
        let mut s = vec![0u8; 16];
        s[..2].copy_from_slice(&(libc::AF_INET as u16).to_ne_bytes());
        s[4..8].copy_from_slice(&v4b(a));
        s
    }

    fn sockaddr_in6(a: &str) -> Vec<u8> {
        let mut s = vec![0u8; 28];
        s[..2].copy_from_slice(&(libc::AF_INET6 as u16).to_ne_bytes());
        s[8..24].copy_from_slice(&v6b(a));
        s
    }

    /// The configurations every table runs under, with the prison's addresses.
    fn configs() -> Vec<(PrisonIp, Option<&'static str>, Option<&'static str>)> {
        vec![
            (ip(&[JIP4]), Some(JIP4), None),
            (ip(&[JIP4_HIGH]), Some(JIP4_HIGH), None),
            (ip(&[JIP6]), None, Some(JIP6)),
            (ip(&[JIP6_HIGH]), None, Some(JIP6_HIGH)),
            (ip(&[JIP4, JIP6]), Some(JIP4), Some(JIP6)),
            (
                ip(&[JIP4_HIGH, JIP6_HIGH]),
                Some(JIP4_HIGH),
                Some(JIP6_HIGH),
            ),
        ]
    }

    #[test]
    fn bind4_allows_the_prison_address_rewrites_the_wildcard_refuses_the_rest() {
        for (config, jip, _) in configs() {
            let insns = program(&config, ATTACH_INET4_BIND);
            // (requested address, allowed, address after the program)
            let mut cases: Vec<(&str, bool, &str)> = vec![
                ("192.0.2.20", false, "192.0.2.20"),
                ("127.0.0.1", false, "127.0.0.1"),
                ("10.2.0.192", false, "10.2.0.192"),
                ("200.2.0.192", false, "200.2.0.192"),
                ("255.255.255.255", false, "255.255.255.255"),
            ];
            match jip {
                Some(jip) => {
                    cases.push((jip, true, jip));
                    cases.push(("0.0.0.0", true, jip));
                }
                None => cases.push(("0.0.0.0", false, "0.0.0.0")),
            }
            for (addr, allowed, after) in cases {
                let mut m = Machine::sock_addr();
                Machine::set(&mut m.ctx, 4, &v4b(addr));
                assert_eq!(m.run(&insns), allowed, "{config:?} bind {addr}");
                assert_eq!(
                    Machine::get(&m.ctx, 4, 4),
                    v4b(after),
                    "{config:?} bind {addr}"
                );
                assert!(m.bound.is_empty());
            }
        }
    }

    #[test]
    fn bind6_allows_the_prison_address_rewrites_the_wildcard_refuses_the_rest() {
        for (config, _, jip) in configs() {
            let insns = program(&config, ATTACH_INET6_BIND);
            let mut cases: Vec<(String, bool, String)> = [
                "2001:db8::20",
                "::1",
                "::ffff:192.0.2.10",
                "::ffff:0.0.0.0",
                "1::",
                "0:0:1::",
                "::1:0:0",
                "fe80::1",
            ]
            .iter()
            .map(|a| (a.to_string(), false, a.to_string()))
            .collect();
            match jip {
                Some(jip) => {
                    cases.push((jip.into(), true, jip.into()));
                    cases.push(("::".into(), true, jip.into()));
                    // The prison address with one 32-bit group changed: each compare matters.
                    let o = v6b(jip);
                    for group in 0..4 {
                        let mut other = o;
                        other[4 * group + 3] ^= 1;
                        let other = Ipv6Addr::from(other).to_string();
                        cases.push((other.clone(), false, other));
                    }
                }
                None => cases.push(("::".into(), false, "::".into())),
            }
            for (addr, allowed, after) in cases {
                let mut m = Machine::sock_addr();
                Machine::set(&mut m.ctx, 8, &v6b(&addr));
                assert_eq!(m.run(&insns), allowed, "{config:?} bind [{addr}]");
                assert_eq!(
                    Machine::get(&m.ctx, 8, 16),
                    v6b(&after),
                    "{config:?} [{addr}]"
                );
            }
        }
    }

    #[test]
    fn connect4_binds_to_the_prison_address_and_keeps_loopback_inside() {
        for (config, jip, _) in configs() {
            let insns = program(&config, ATTACH_INET4_CONNECT);
            let Some(jip) = jip else {
                let mut m = Machine::sock_addr();
                Machine::set(&mut m.ctx, 4, &v4b("192.0.2.20"));
                assert!(
                    !m.run(&insns),
                    "{config:?}: IPv4 connect without an IPv4 address"
                );
                assert!(m.bound.is_empty());
                continue;
            };
            // (destination, socket's source, bpf_bind result, allowed, destination after,
            //  bpf_bind called)
            let cases = [
                ("192.0.2.20", "0.0.0.0", 0, true, "192.0.2.20", true),
                ("198.51.100.2", "0.0.0.0", 0, true, "198.51.100.2", true),
                (
                    "192.0.2.20",
                    "0.0.0.0",
                    -libc::EADDRNOTAVAIL,
                    false,
                    "192.0.2.20",
                    true,
                ),
                ("192.0.2.20", jip, 0, true, "192.0.2.20", false),
                ("192.0.2.20", jip, -libc::EINVAL, true, "192.0.2.20", false),
                (
                    "192.0.2.20",
                    "192.0.2.20",
                    -libc::EINVAL,
                    false,
                    "192.0.2.20",
                    true,
                ),
                ("127.0.0.1", "0.0.0.0", 0, true, jip, true),
                ("127.1.2.3", "0.0.0.0", 0, true, jip, true),
                ("0.0.0.0", "0.0.0.0", 0, true, jip, true),
                ("126.0.0.1", "0.0.0.0", 0, true, "126.0.0.1", true),
                ("128.0.0.1", "0.0.0.0", 0, true, "128.0.0.1", true),
                ("1.0.0.127", "0.0.0.0", 0, true, "1.0.0.127", true),
                ("0.0.0.1", "0.0.0.0", 0, true, "0.0.0.1", true),
            ];
            for (dst, src, result, allowed, after, binds) in cases {
                let what = format!("{config:?} connect {dst} from {src} (bind {result})");
                let mut m = Machine::sock_addr();
                m.bind_result = result.into();
                Machine::set(&mut m.ctx, 4, &v4b(dst));
                Machine::set(&mut m.sock, 24, &v4b(src));
                assert_eq!(m.run(&insns), allowed, "{what}");
                assert_eq!(Machine::get(&m.ctx, 4, 4), v4b(after), "{what}");
                let expected = if binds {
                    vec![sockaddr_in(jip)]
                } else {
                    vec![]
                };
                assert_eq!(m.bound, expected, "{what}");
            }
        }
    }

    #[test]
    fn connect6_binds_to_the_prison_address_keeps_loopback_inside_refuses_mapped() {
        for (config, _, jip) in configs() {
            let insns = program(&config, ATTACH_INET6_CONNECT);
            let Some(jip) = jip else {
                let mut m = Machine::sock_addr();
                Machine::set(&mut m.ctx, 8, &v6b("2001:db8::20"));
                assert!(
                    !m.run(&insns),
                    "{config:?}: IPv6 connect without an IPv6 address"
                );
                assert!(m.bound.is_empty());
                continue;
            };
            let mut cases = vec![
                ("2001:db8::20", "::", 0, true, "2001:db8::20", true),
                (
                    "2001:db8::20",
                    "::",
                    -libc::EADDRNOTAVAIL,
                    false,
                    "2001:db8::20",
                    true,
                ),
                ("2001:db8::20", jip, 0, true, "2001:db8::20", false),
                (
                    "2001:db8::20",
                    "2001:db8::20",
                    -libc::EINVAL,
                    false,
                    "2001:db8::20",
                    true,
                ),
                ("::1", "::", 0, true, jip, true),
                ("::", "::", 0, true, jip, true),
                (
                    "::ffff:127.0.0.1",
                    "::",
                    0,
                    false,
                    "::ffff:127.0.0.1",
                    false,
                ),
                (
                    "::ffff:192.0.2.20",
                    "::",
                    0,
                    false,
                    "::ffff:192.0.2.20",
                    false,
                ),
                ("::2", "::", 0, true, "::2", true),
                ("::1:0:1", "::", 0, true, "::1:0:1", true),
                ("0:0:1::1", "::", 0, true, "0:0:1::1", true),
                ("1::1", "::", 0, true, "1::1", true),
                ("::1:ffff:0:1", "::", 0, true, "::1:ffff:0:1", true),
            ];
            // The socket's source differs from the prison address in one group: bind again.
            let o = v6b(jip);
            let others: Vec<String> = (0..4)
                .map(|group| {
                    let mut other = o;
                    other[4 * group] ^= 0x80;
                    Ipv6Addr::from(other).to_string()
                })
                .collect();
            for other in &others {
                cases.push((
                    "2001:db8::20",
                    other,
                    -libc::EINVAL,
                    false,
                    "2001:db8::20",
                    true,
                ));
            }
            for (dst, src, result, allowed, after, binds) in cases {
                let what = format!("{config:?} connect [{dst}] from [{src}] (bind {result})");
                let mut m = Machine::sock_addr();
                m.bind_result = result.into();
                Machine::set(&mut m.ctx, 8, &v6b(dst));
                Machine::set(&mut m.sock, 28, &v6b(src));
                assert_eq!(m.run(&insns), allowed, "{what}");
                assert_eq!(Machine::get(&m.ctx, 8, 16), v6b(after), "{what}");
                let expected = if binds {
                    vec![sockaddr_in6(jip)]
                } else {
                    vec![]
                };
                assert_eq!(m.bound, expected, "{what}");
            }
        }
    }

    #[test]
    fn sendmsg4_sets_the_source_and_keeps_loopback_inside() {
        for (config, jip, _) in configs() {
            let insns = program(&config, ATTACH_UDP4_SENDMSG);
            let Some(jip) = jip else {
                let mut m = Machine::sock_addr();
                Machine::set(&mut m.ctx, 4, &v4b("192.0.2.20"));
                assert!(!m.run(&insns), "{config:?}");
                continue;
            };
            // (destination, source asked for with IP_PKTINFO, destination after)
            let cases = [
                ("192.0.2.20", "0.0.0.0", "192.0.2.20"),
                ("192.0.2.20", "192.0.2.20", "192.0.2.20"),
                ("198.51.100.2", "198.51.100.1", "198.51.100.2"),
                ("127.0.0.53", "0.0.0.0", jip),
                ("0.0.0.0", "0.0.0.0", jip),
                ("128.0.0.1", "0.0.0.0", "128.0.0.1"),
            ];
            for (dst, src, after) in cases {
                let what = format!("{config:?} sendto {dst} from {src}");
                let mut m = Machine::sock_addr();
                Machine::set(&mut m.ctx, 4, &v4b(dst));
                Machine::set(&mut m.ctx, 40, &v4b(src));
                assert!(m.run(&insns), "{what}");
                assert_eq!(Machine::get(&m.ctx, 40, 4), v4b(jip), "{what}: source");
                assert_eq!(
                    Machine::get(&m.ctx, 4, 4),
                    v4b(after),
                    "{what}: destination"
                );
            }
        }
    }

    #[test]
    fn sendmsg6_sets_the_source_keeps_loopback_inside_refuses_mapped() {
        for (config, _, jip) in configs() {
            let insns = program(&config, ATTACH_UDP6_SENDMSG);
            let Some(jip) = jip else {
                let mut m = Machine::sock_addr();
                Machine::set(&mut m.ctx, 8, &v6b("2001:db8::20"));
                assert!(!m.run(&insns), "{config:?}");
                continue;
            };
            // (destination, allowed, destination after)
            let cases = [
                ("2001:db8::20", true, "2001:db8::20"),
                ("::1", true, jip),
                ("::", true, jip),
                ("::2", true, "::2"),
                ("::ffff:192.0.2.20", false, "::ffff:192.0.2.20"),
                ("::ffff:127.0.0.1", false, "::ffff:127.0.0.1"),
                ("0:0:1::1", true, "0:0:1::1"),
            ];
            for (dst, allowed, after) in cases {
                let what = format!("{config:?} sendto [{dst}]");
                let mut m = Machine::sock_addr();
                Machine::set(&mut m.ctx, 8, &v6b(dst));
                Machine::set(&mut m.ctx, 44, &v6b("2001:db8::20"));
                assert_eq!(m.run(&insns), allowed, "{what}");
                assert_eq!(
                    Machine::get(&m.ctx, 8, 16),
                    v6b(after),
                    "{what}: destination"
                );
                let source = if allowed { jip } else { "2001:db8::20" };
                assert_eq!(Machine::get(&m.ctx, 44, 16), v6b(source), "{what}: source");
            }
        }
    }

    #[test]
    fn socket_allows_tcp_and_udp_of_the_prison_families_only() {
        const MPTCP: i32 = 262;
        for (config, jip4, jip6) in configs() {
            let insns = program(&config, ATTACH_INET_SOCK_CREATE);
            for (family, has) in [
                (libc::AF_INET, jip4.is_some()),
                (libc::AF_INET6, jip6.is_some()),
                (libc::AF_UNIX, false),
                (libc::AF_PACKET, false),
            ] {
                for (kind, protocol, allowed) in [
                    (libc::SOCK_STREAM, libc::IPPROTO_TCP, true),
                    (libc::SOCK_DGRAM, libc::IPPROTO_UDP, true),
                    (libc::SOCK_RAW, libc::IPPROTO_ICMP, false),
                    (libc::SOCK_RAW, libc::IPPROTO_TCP, false),
                    (libc::SOCK_RAW, libc::IPPROTO_UDP, false),
                    (libc::SOCK_RAW, libc::IPPROTO_RAW, false),
                    (libc::SOCK_DGRAM, libc::IPPROTO_ICMP, false),
                    (libc::SOCK_DGRAM, libc::IPPROTO_ICMPV6, false),
                    (libc::SOCK_DGRAM, libc::IPPROTO_UDPLITE, false),
                    (libc::SOCK_STREAM, MPTCP, false),
                    (libc::SOCK_STREAM, libc::IPPROTO_SCTP, false),
                    (libc::SOCK_SEQPACKET, libc::IPPROTO_SCTP, false),
                ] {
                    let mut m = Machine::sock();
                    Machine::set(&mut m.ctx, 4, &(family as u32).to_ne_bytes());
                    Machine::set(&mut m.ctx, 8, &(kind as u32).to_ne_bytes());
                    Machine::set(&mut m.ctx, 12, &(protocol as u32).to_ne_bytes());
                    assert_eq!(
                        m.run(&insns),
                        has && allowed,
                        "{config:?} socket({family}, {kind}, {protocol})"
                    );
                }
            }
        }
    }

    /// Without PARANOID a PrisonIP wildcard leaves its family open; the other stays refused.
    #[test]
    fn a_wildcard_family_is_open_and_the_other_refused() {
        let config = ip(&["0.0.0.0"]);
        for p in programs(&config, None) {
            let mut m = Machine::sock_addr();
            if p.attach_type == ATTACH_INET_SOCK_CREATE {
                for (family, allowed) in [(libc::AF_INET, true), (libc::AF_INET6, false)] {
                    let mut m = Machine::sock();
                    Machine::set(&mut m.ctx, 4, &(family as u32).to_ne_bytes());
                    Machine::set(&mut m.ctx, 8, &(libc::SOCK_STREAM as u32).to_ne_bytes());
                    Machine::set(&mut m.ctx, 12, &(libc::IPPROTO_TCP as u32).to_ne_bytes());
                    assert_eq!(m.run(&p.insns), allowed, "{} {family}", p.name);
                }
                continue;
            }
            Machine::set(&mut m.ctx, 4, &v4b("192.0.2.20"));
            Machine::set(&mut m.ctx, 8, &v6b("2001:db8::20"));
            let v4_hook = [ATTACH_INET4_BIND, ATTACH_INET4_CONNECT, ATTACH_UDP4_SENDMSG]
                .contains(&p.attach_type);
            assert_eq!(m.run(&p.insns), v4_hook, "{}", p.name);
            assert_eq!(Machine::get(&m.ctx, 4, 4), v4b("192.0.2.20"), "{}", p.name);
            assert!(m.bound.is_empty(), "{}", p.name);
        }
        let config = ip(&["::"]);
        let mut m = Machine::sock_addr();
        Machine::set(&mut m.ctx, 8, &v6b("::1"));
        assert!(m.run(&program(&config, ATTACH_INET6_CONNECT)));
        assert_eq!(Machine::get(&m.ctx, 8, 16), v6b("::1"));
    }

    /// The kernel's verifier accepts every program of every configuration (loading attaches
    /// nothing). Needs root, like the rest of the suite.
    #[test]
    fn the_kernel_loads_every_program() {
        // SAFETY: geteuid has no preconditions.
        let euid = unsafe { libc::geteuid() };
        assert_eq!(euid, 0, "loading BPF programs needs root");
        let mut all = configs();
        all.push((ip(&["0.0.0.0", "::"]), None, None));
        for (config, _, _) in all {
            for p in programs(&config, None) {
                super::super::bpf::load(p.prog_type, p.attach_type, p.name, &p.insns)
                    .unwrap_or_else(|e| panic!("{config:?} {}: {e}", p.name));
            }
        }
    }

    #[test]
    fn every_hook_has_one_program() {
        let hooks: Vec<u32> = programs(&ip(&[JIP4]), None)
            .iter()
            .map(|p| p.attach_type)
            .collect();
        assert_eq!(
            hooks,
            [
                ATTACH_INET_SOCK_CREATE,
                ATTACH_INET4_BIND,
                ATTACH_INET6_BIND,
                ATTACH_INET4_CONNECT,
                ATTACH_INET6_CONNECT,
                ATTACH_UDP4_SENDMSG,
                ATTACH_UDP6_SENDMSG,
            ]
        );
    }

    // PrisonConnect.

    /// The allow-list every PrisonConnect table runs against: each shape of entry once.
    const LIST: &[&str] = &[
        "192.0.2.30:3306",
        "198.51.100.0/24:1000-2000",
        "203.0.113.128/25",
        "192.0.2.40:256",
        "127.0.0.1:5432",
        "192.0.2.10:80",
        "192.0.2.200:80",
        "[2001:db8:1::/48]:443",
        "2001:db8::30",
        "[2001:db8:ff00::/40]:1-80",
        "[::1]:5432",
        "[2001:db8::10]:80",
        "[f001:db8:8000:0:8000::ff80]:80",
        "0.0.0.0/0:9",
        "[::/0]:9",
    ];

    fn list(words: &[&str]) -> Vec<Destination> {
        words
            .iter()
            .map(|w| match crate::config::ConnectEntry::parse(w) {
                Ok(crate::config::ConnectEntry::Destination(d)) => d,
                other => panic!("{w}: {other:?}"),
            })
            .collect()
    }

    fn connect_program(ip: &PrisonIp, list: &[Destination], attach_type: u32) -> Vec<Insn> {
        let connect = Connect {
            list,
            counter: MAP_FD,
        };
        programs(ip, Some(&connect))
            .into_iter()
            .find(|p| p.attach_type == attach_type)
            .expect("program")
            .insns
    }

    /// What a table row expects: allowed, and the destination after the program.
    #[derive(Debug, Clone, Copy, PartialEq)]
    enum Verdict {
        /// Allowed, destination unchanged.
        Allow,
        /// Allowed, the destination rewritten to the prison's address.
        AllowRewritten,
        /// Refused and counted.
        Refuse,
    }
    use Verdict::*;

    /// (destination, port, verdict with PrisonIP the prison's address, with PrisonIP the wildcard)
    fn table4() -> Vec<(&'static str, u16, Verdict, Verdict)> {
        vec![
            ("192.0.2.30", 3306, Allow, Allow),
            ("192.0.2.30", 3307, Refuse, Refuse),
            ("192.0.2.30", 3305, Refuse, Refuse),
            ("192.0.2.30", 0xca0c, Refuse, Refuse), // 3306 byte-swapped
            ("192.0.2.31", 3306, Refuse, Refuse),
            ("192.0.2.158", 3306, Refuse, Refuse), // 192.0.2.30 with the top bit of the last octet
            ("198.51.100.7", 1000, Allow, Allow),
            ("198.51.100.255", 2000, Allow, Allow),
            ("198.51.100.0", 1500, Allow, Allow),
            ("198.51.100.7", 999, Refuse, Refuse),
            ("198.51.100.7", 2001, Refuse, Refuse),
            ("198.51.101.7", 1500, Refuse, Refuse),
            ("199.51.100.7", 1500, Refuse, Refuse),
            ("198.51.100.7", 0xe803, Refuse, Refuse), // 1000 byte-swapped
            ("203.0.113.200", 1, Allow, Allow),
            ("203.0.113.128", 65535, Allow, Allow),
            ("203.0.113.127", 1, Refuse, Refuse),
            ("202.0.113.200", 1, Refuse, Refuse),
            ("192.0.2.40", 256, Allow, Allow),
            ("192.0.2.40", 1, Refuse, Refuse),
            // The host's loopback: only through its own entry, unchanged.
            ("127.0.0.1", 5432, Allow, Allow),
            ("127.0.0.1", 5433, Refuse, Refuse),
            ("127.0.0.2", 5432, Refuse, Refuse),
            ("0.0.0.0", 5432, Refuse, Refuse),
            // Unlisted loopback: the prison's own address, allowed if that is listed.
            ("127.0.0.1", 80, AllowRewritten, Refuse),
            ("127.9.9.9", 80, AllowRewritten, Refuse),
            ("0.0.0.0", 80, AllowRewritten, Refuse),
            ("0.0.0.0", 9, AllowRewritten, Refuse),
            ("127.0.0.1", 81, Refuse, Refuse),
            ("192.0.2.10", 80, Allow, Allow),
            ("192.0.2.200", 80, Allow, Allow),
            ("192.0.2.11", 80, Refuse, Refuse),
            ("192.0.2.201", 80, Refuse, Refuse),
            ("198.18.0.1", 9, Allow, Allow),
            ("198.18.0.1", 10, Refuse, Refuse),
            ("127.0.0.1", 9, AllowRewritten, Refuse),
            ("126.0.0.1", 5432, Refuse, Refuse),
            ("128.0.0.1", 5432, Refuse, Refuse),
        ]
    }

    fn table6() -> Vec<(&'static str, u16, Verdict, Verdict)> {
        vec![
            ("2001:db8:1::1", 443, Allow, Allow),
            ("2001:db8:1:ffff:ffff:ffff:ffff:ffff", 443, Allow, Allow),
            ("2001:db8:1::1", 444, Refuse, Refuse),
            ("2001:db8:1::1", 442, Refuse, Refuse),
            ("2001:db8:2::1", 443, Refuse, Refuse),
            ("2001:db9:1::1", 443, Refuse, Refuse),
            ("3001:db8:1::1", 443, Refuse, Refuse),
            ("2001:db8::30", 1, Allow, Allow),
            ("2001:db8::30", 65535, Allow, Allow),
            ("2001:db8::31", 1, Refuse, Refuse),
            ("2001:db8:0:1::30", 1, Refuse, Refuse),
            ("2001:db8:ff12::1", 80, Allow, Allow),
            ("2001:db8:ffff::1", 1, Allow, Allow),
            ("2001:db8:ff12::1", 81, Refuse, Refuse),
            ("2001:db8:ff12::1", 0, Refuse, Refuse),
            ("2001:db8:fe12::1", 80, Refuse, Refuse),
            ("2001:db8:7f12::1", 80, Refuse, Refuse),
            // IPv4-mapped: never, though the IPv4 list has 192.0.2.30:3306.
            ("::ffff:192.0.2.30", 3306, Refuse, Refuse),
            ("::ffff:127.0.0.1", 5432, Refuse, Refuse),
            ("::ffff:198.18.0.1", 9, Refuse, Refuse),
            ("2001:db8:5::1", 9, Allow, Allow),
            ("2001:db8:5::1", 10, Refuse, Refuse),
            ("::1", 9, AllowRewritten, Refuse),
            // The host's loopback only through its entry.
            ("::1", 5432, Allow, Allow),
            ("::1", 5431, Refuse, Refuse),
            ("::", 5432, Refuse, Refuse),
            ("::2", 5432, Refuse, Refuse),
            ("::1", 80, AllowRewritten, Refuse),
            ("::", 80, AllowRewritten, Refuse),
            ("::", 9, AllowRewritten, Refuse),
            ("1::1", 80, Refuse, Refuse),
            ("::1:0:0:1", 5432, Refuse, Refuse),
            ("2001:db8::10", 80, Allow, Allow),
            ("f001:db8:8000:0:8000::ff80", 80, Allow, Allow),
            ("2001:db8::11", 80, Refuse, Refuse),
            ("f001:db8:8000:0:8000::ff81", 80, Refuse, Refuse),
        ]
    }

    fn port_bytes(port: u16) -> [u8; 4] {
        let b = port.to_be_bytes();
        [b[0], b[1], 0, 0]
    }

    /// Runs one row; returns what went differently, if anything (also used for mutants).
    fn run_row(
        insns: &[Insn],
        v6: bool,
        (dst, port): (&str, u16),
        jip: Option<&str>,
        expected: Verdict,
        sendmsg: bool,
    ) -> Option<String> {
        let first = run_row_bound(insns, v6, (dst, port), jip, expected, sendmsg, false);
        if sendmsg || jip.is_none() || first.is_some() {
            return first;
        }
        run_row_bound(insns, v6, (dst, port), jip, expected, sendmsg, true)
            .map(|f| format!("{f} (socket bound to the prison address already)"))
    }

    /// `bound`: the connecting socket already has the prison address (an explicit bind), so
    /// connect binds nothing.
    fn run_row_bound(
        insns: &[Insn],
        v6: bool,
        (dst, port): (&str, u16),
        jip: Option<&str>,
        expected: Verdict,
        sendmsg: bool,
        bound: bool,
    ) -> Option<String> {
        let mut m = Machine::sock_addr();
        if let (true, Some(j)) = (bound, jip) {
            match v6 {
                false => Machine::set(&mut m.sock, 24, &v4b(j)),
                true => Machine::set(&mut m.sock, 28, &v6b(j)),
            }
        }
        let (at, dst_bytes) = if v6 {
            (8, v6b(dst).to_vec())
        } else {
            (4, v4b(dst).to_vec())
        };
        Machine::set(&mut m.ctx, at, &dst_bytes);
        Machine::set(&mut m.ctx, 24, &port_bytes(port));
        let allowed = m.run(insns);
        let after = Machine::get(&m.ctx, at, dst_bytes.len());
        let rewritten = match (jip, v6) {
            (Some(j), false) => v4b(j).to_vec(),
            (Some(j), true) => v6b(j).to_vec(),
            (None, _) => dst_bytes.clone(),
        };
        let (want_allowed, want_after, want_count) = match expected {
            Allow => (true, &dst_bytes, 0),
            AllowRewritten => (true, &rewritten, 0),
            Refuse => (false, &after, 1),
        };
        let mut wrong = Vec::new();
        if allowed != want_allowed {
            wrong.push(format!("allowed {allowed}"));
        }
        if after != *want_after {
            wrong.push(format!("destination {after:?}"));
        }
        if m.counter != want_count {
            wrong.push(format!("counted {}", m.counter));
        }
        if Machine::get(&m.ctx, 24, 4) != port_bytes(port) {
            wrong.push("port changed".into());
        }
        // The source: bound (connect) or set (sendmsg) to the prison address when allowed.
        let (src_at, want_src) = match (sendmsg, v6) {
            (true, false) => (40, jip.map(|j| v4b(j).to_vec())),
            (true, true) => (44, jip.map(|j| v6b(j).to_vec())),
            _ => (0, None),
        };
        if sendmsg {
            let src = Machine::get(&m.ctx, src_at, if v6 { 16 } else { 4 });
            let expected = match (allowed, want_src) {
                (true, Some(s)) => s,
                _ => vec![0; src.len()],
            };
            if src != expected {
                wrong.push(format!("source {src:?}"));
            }
        } else {
            let expected = match (allowed && !bound, jip, v6) {
                (true, Some(j), false) => vec![sockaddr_in(j)],
                (true, Some(j), true) => vec![sockaddr_in6(j)],
                _ => vec![],
            };
            if m.bound != expected {
                wrong.push(format!("bound {:?}", m.bound));
            }
        }
        (!wrong.is_empty()).then(|| format!("{dst} port {port}: {}", wrong.join(", ")))
    }

    /// Every (PrisonIP, hook) a PrisonConnect table runs under: the prison's address for
    /// IPv4 and IPv6 (low and high values), and the wildcard.
    fn connect_configs() -> Vec<(PrisonIp, Option<&'static str>, Option<&'static str>)> {
        vec![
            (ip(&[JIP4, JIP6]), Some(JIP4), Some(JIP6)),
            (
                ip(&[JIP4_HIGH, JIP6_HIGH]),
                Some(JIP4_HIGH),
                Some(JIP6_HIGH),
            ),
            (ip(&["0.0.0.0", "::"]), None, None),
        ]
    }

    /// Every row of every table for one program; the failures, as text.
    fn run_table(
        insns: &[Insn],
        attach_type: u32,
        jip4: Option<&str>,
        jip6: Option<&str>,
    ) -> Vec<String> {
        let v6 = matches!(attach_type, ATTACH_INET6_CONNECT | ATTACH_UDP6_SENDMSG);
        let sendmsg = matches!(attach_type, ATTACH_UDP4_SENDMSG | ATTACH_UDP6_SENDMSG);
        let jip = if v6 { jip6 } else { jip4 };
        let rows = if v6 { table6() } else { table4() };
        let mut failures = Vec::new();
        for (dst, port, with_jip, wildcard) in rows {
            let expected = if jip.is_some() { with_jip } else { wildcard };
            if let Some(f) = run_row(insns, v6, (dst, port), jip, expected, sendmsg) {
                failures.push(f);
            }
        }
        failures
    }

    const CONNECT_HOOKS: [u32; 4] = [
        ATTACH_INET4_CONNECT,
        ATTACH_INET6_CONNECT,
        ATTACH_UDP4_SENDMSG,
        ATTACH_UDP6_SENDMSG,
    ];

    #[test]
    fn prison_connect_allows_only_listed_destinations_on_every_hook() {
        let destinations = list(LIST);
        for (config, jip4, jip6) in connect_configs() {
            for hook in CONNECT_HOOKS {
                let insns = connect_program(&config, &destinations, hook);
                let failures = run_table(&insns, hook, jip4, jip6);
                assert!(failures.is_empty(), "{config:?} hook {hook}: {failures:#?}");
            }
        }
    }

    /// A wider entry such as `0.0.0.0/0:443` covers the prison's own address behind a loopback
    /// destination, never the host's loopback.
    #[test]
    fn a_wide_entry_does_not_open_the_hosts_loopback() {
        let destinations = list(&["0.0.0.0/0:443", "[::/0]:443"]);
        for (config, jip4, jip6) in connect_configs() {
            for hook in CONNECT_HOOKS {
                let v6 = matches!(hook, ATTACH_INET6_CONNECT | ATTACH_UDP6_SENDMSG);
                let sendmsg = matches!(hook, ATTACH_UDP4_SENDMSG | ATTACH_UDP6_SENDMSG);
                let jip = if v6 { jip6 } else { jip4 };
                let insns = connect_program(&config, &destinations, hook);
                let loopback = if jip.is_some() {
                    AllowRewritten
                } else {
                    Refuse
                };
                let rows: &[(&str, u16, Verdict)] = if v6 {
                    &[
                        ("2001:db8:1::1", 443, Allow),
                        ("2001:db8:1::1", 80, Refuse),
                        ("::1", 443, loopback),
                        ("::", 443, loopback),
                        ("::ffff:192.0.2.30", 443, Refuse),
                    ]
                } else {
                    &[
                        ("198.51.100.2", 443, Allow),
                        ("198.51.100.2", 80, Refuse),
                        ("127.0.0.1", 443, loopback),
                        ("127.0.0.53", 443, loopback),
                        ("0.0.0.0", 443, loopback),
                    ]
                };
                for &(dst, port, verdict) in rows {
                    let wrong = run_row(&insns, v6, (dst, port), jip, verdict, sendmsg);
                    assert_eq!(wrong, None, "{config:?} hook {hook}");
                }
            }
        }
    }

    #[test]
    fn prison_connect_none_refuses_everything_and_counts() {
        for (config, jip4, jip6) in connect_configs() {
            for hook in CONNECT_HOOKS {
                let insns = connect_program(&config, &[], hook);
                let v6 = matches!(hook, ATTACH_INET6_CONNECT | ATTACH_UDP6_SENDMSG);
                let sendmsg = matches!(hook, ATTACH_UDP4_SENDMSG | ATTACH_UDP6_SENDMSG);
                let jip = if v6 { jip6 } else { jip4 };
                let rows: &[&str] = if v6 {
                    &["2001:db8:1::1", "::1", "::", "::ffff:192.0.2.1"]
                } else {
                    &["198.51.100.2", "127.0.0.1", "0.0.0.0", "255.255.255.255"]
                };
                for dst in rows {
                    let wrong = run_row(&insns, v6, (dst, 80), jip, Refuse, sendmsg);
                    assert_eq!(wrong, None, "{config:?} hook {hook}");
                }
            }
        }
    }

    /// A family without a PrisonIP address stays refused without counting: its sockets never
    /// exist (sock_create), so nothing there is a destination refusal.
    #[test]
    fn prison_connect_leaves_a_refused_family_refused() {
        let destinations = list(LIST);
        let config = ip(&[JIP4]);
        for hook in [ATTACH_INET6_CONNECT, ATTACH_UDP6_SENDMSG] {
            let insns = connect_program(&config, &destinations, hook);
            assert_eq!(insns, verdict_only(DENY));
        }
    }

    /// Mutation check: every conditional jump of every PrisonConnect program, negated or with
    /// its immediate changed, makes the table fail. So no branch is there without a row that
    /// needs it.
    #[test]
    fn every_mutated_branch_fails_the_table() {
        use super::super::bpf::{CLASS_JMP, CLASS_JMP32, OP_JEQ, OP_JGT, OP_JLT, OP_JNE};
        let destinations = list(LIST);
        let mut mutants = 0;
        // A mutant the interpreter refuses (as the verifier would) panics: caught, and quiet.
        thread_local!(static QUIET: std::cell::Cell<bool> = const { std::cell::Cell::new(false) });
        let previous = std::sync::Arc::new(std::panic::take_hook());
        let others = previous.clone();
        std::panic::set_hook(Box::new(move |info| {
            if !QUIET.with(|q| q.get()) {
                others(info);
            }
        }));
        for (config, jip4, jip6) in connect_configs() {
            for hook in CONNECT_HOOKS {
                let insns = connect_program(&config, &destinations, hook);
                assert!(run_table(&insns, hook, jip4, jip6).is_empty());
                for (at, insn) in insns.iter().enumerate() {
                    let class = insn.code & 0x07;
                    let op = insn.code & 0xf0;
                    if !(class == CLASS_JMP32 || class == CLASS_JMP) || insn.code & 0x08 != 0 {
                        continue;
                    }
                    let negated = match op {
                        OP_JEQ => OP_JNE,
                        OP_JNE => OP_JEQ,
                        // jlt k -> jge k is jgt k-1; jgt k -> jle k is jlt k+1.
                        OP_JLT => OP_JGT,
                        OP_JGT => OP_JLT,
                        _ => continue,
                    };
                    let mut variants = Vec::new();
                    let mut flipped = *insn;
                    flipped.code = (insn.code & !0xf0) | negated;
                    flipped.imm = match op {
                        OP_JLT => insn.imm.wrapping_sub(1),
                        OP_JGT => insn.imm.wrapping_add(1),
                        _ => insn.imm,
                    };
                    variants.push(("negated", flipped));
                    let mut other = *insn;
                    other.imm ^= 1;
                    variants.push(("immediate ^ 1", other));
                    for (how, mutant) in variants {
                        let mut program = insns.clone();
                        program[at] = mutant;
                        QUIET.with(|q| q.set(true));
                        let caught = std::panic::catch_unwind(|| {
                            !run_table(&program, hook, jip4, jip6).is_empty()
                        })
                        .unwrap_or(true);
                        QUIET.with(|q| q.set(false));
                        assert!(
                            caught,
                            "{config:?} hook {hook}: insn {at} {insn:?} {how} survives the table"
                        );
                        mutants += 1;
                    }
                }
            }
        }
        drop(std::panic::take_hook());
        std::panic::set_hook(Box::new(move |info| previous(info)));
        assert!(mutants > 100, "only {mutants} mutants");
    }

    /// The verifier accepts PrisonConnect's programs in every shape (each kind of entry, the
    /// empty list, the largest list), with a real counter map.
    #[test]
    fn the_kernel_loads_every_prison_connect_program() {
        // SAFETY: geteuid has no preconditions.
        let euid = unsafe { libc::geteuid() };
        assert_eq!(euid, 0, "loading BPF programs needs root");
        let counter = super::super::bpf::Counter::create("test_refused").expect("map");
        let largest: Vec<String> = (0..crate::config::MAX_DESTINATIONS)
            .map(|i| match i % 2 {
                0 => format!("198.51.{}.0/24:{}-{}", i % 256, i + 1, i + 2),
                _ => format!("[2001:db8:{i:x}::/48]:{}", i + 1),
            })
            .collect();
        let largest: Vec<&str> = largest.iter().map(String::as_str).collect();
        let lists: [&[&str]; 5] = [
            LIST,
            &[],
            &["0.0.0.0/0"],
            &["127.0.0.1:5432", "::1"],
            &largest,
        ];
        let mut all = connect_configs();
        all.push((ip(&[JIP4]), Some(JIP4), None));
        all.push((ip(&[JIP6_HIGH]), None, Some(JIP6_HIGH)));
        for (config, _, _) in all {
            for words in lists {
                let destinations = list(words);
                let connect = Connect {
                    list: &destinations,
                    counter: counter.fd(),
                };
                for p in programs(&config, Some(&connect)) {
                    super::super::bpf::load(p.prog_type, p.attach_type, p.name, &p.insns)
                        .unwrap_or_else(|e| {
                            panic!("{config:?} {} ({} entries): {e}", p.name, words.len())
                        });
                }
            }
        }
        assert_eq!(counter.read().expect("reading the counter"), 0);
    }
}
