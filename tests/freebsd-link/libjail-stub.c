/*
 * A link-time stand-in for FreeBSD's /lib/libjail.so.1, used only by `make check-freebsd-link`
 * (docs/freebsd.md "Linked, not only type-checked"). The FreeBSD libc sysroot that check uses
 * (PyPI's ziglang) has no libjail, so the module is linked against this file's symbols instead.
 *
 * It defines exactly the libjail symbols src/jail/freebsd/sys.rs declares, with the prototypes
 * of lib/libjail/jail.h as docs/freebsd-api.md "libjail(3)" quotes them, and nothing else: a
 * libjail function the code starts using fails the link until it is added here and there. The
 * bodies are never run (the .so is thrown away after the check); ELF linking checks names, not
 * types, so the prototypes below are what a reviewer compares with the Rust declarations.
 */
#include <stddef.h>

#define JAIL_ERRMSGLEN 1024

struct jailparam {
	char		*jp_name;
	void		*jp_value;
	size_t		 jp_valuelen;
	size_t		 jp_elemlen;
	int		 jp_ctltype;
	int		 jp_structtype;
	unsigned	 jp_flags;
};

char jail_errmsg[JAIL_ERRMSGLEN];

int jailparam_init(struct jailparam *jp, const char *name) { (void)jp; (void)name; return -1; }
int jailparam_import(struct jailparam *jp, const char *value) { (void)jp; (void)value; return -1; }
int jailparam_set(struct jailparam *jp, unsigned njp, int flags) { (void)jp; (void)njp; (void)flags; return -1; }
void jailparam_free(struct jailparam *jp, unsigned njp) { (void)jp; (void)njp; }
