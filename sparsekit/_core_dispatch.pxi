# ISA dispatch and threads (included by _core.pyx).

def isa_names():
    return [sk_isa_name(<sk_isa>i).decode() for i in range(SK_ISA_COUNT)]


def _isa_index(str name):
    names = isa_names()
    if name not in names:
        raise ValueError(f"isa: expected one of {names}, got {name!r}")
    return names.index(name)


def cpu_supports(str name):
    return bool(sk_cpu_supports(<sk_isa>_isa_index(name)))


def best_isa():
    return sk_isa_name(sk_best_isa()).decode()


def get_isa():
    return sk_isa_name(sk_get_isa()).decode()


def set_isa(str name):
    rc = sk_set_isa(<sk_isa>_isa_index(name))
    if rc == SK_ERR_UNSUPPORTED:
        raise RuntimeError(f"isa: this CPU does not support {name!r} "
                           f"(best available: {best_isa()!r})")
    check(rc)


def family_isa(str family):
    cdef int isa = sk_family_isa(family.encode())
    if isa < 0:
        raise ValueError(f"family: unknown kernel family {family!r}")
    return sk_isa_name(<sk_isa>isa).decode()


def set_num_threads(int n):
    sk_set_num_threads(n)


def get_num_threads():
    return sk_get_num_threads()


def set_thread_backoff(bint on):
    sk_set_thread_backoff(on)


def thread_backoff_state():
    cdef sk_thread_backoff_info s
    sk_thread_backoff_state(&s)
    return {"enabled": bool(s.enabled), "active": bool(s.active), "window_s": s.window_s,
            "last_late_us": s.last_late_us, "since_last_late_s": s.since_last_late_s}
