/* Diagnostics: "file: severity: message" on the sink, last error kept. */
#include "lp_ir.h"

#include <stdarg.h>
#include <string.h>

const char *lp_status_name(lp_status s) {
    switch (s) {
    case LP_OK: return "ok";
    case LP_ERR_INVALID_MODEL: return "invalid model";
    case LP_ERR_UNSUPPORTED: return "unsupported model";
    case LP_ERR_USAGE: return "usage error";
    case LP_ERR_INFEASIBLE: return "infeasible plan";
    case LP_ERR_OUTPUT: return "output error";
    case LP_ERR_INTERNAL: return "internal error";
    case LP_ERR_PEER: return "peer failed";
    }
    return "unknown status";
}

lp_diag lp_diag_make(const char *file) {
    lp_diag d;
    memset(&d, 0, sizeof d);
    d.file = file;
    d.sink = stderr;
    return d;
}

void lp_vreport(lp_diag *d, lp_severity sev, const char *fmt, va_list ap) {
    static const char *const label[] = {"note", "warning", "error"};
    char msg[sizeof d->last_error];
    vsnprintf(msg, sizeof msg, fmt, ap);
    if (sev == LP_SEV_ERROR) {
        d->n_errors++;
        snprintf(d->last_error, sizeof d->last_error, "%s", msg);
    } else if (sev == LP_SEV_WARNING) {
        d->n_warnings++;
    }
    if (!d->sink || (d->quiet && sev != LP_SEV_ERROR)) return;
    if (d->file)
        fprintf(d->sink, "%s: %s: %s\n", d->file, label[sev], msg);
    else
        fprintf(d->sink, "lpcc: %s: %s\n", label[sev], msg);
}

lp_status lp_verror(lp_diag *d, lp_status s, const char *fmt, va_list ap) {
    lp_vreport(d, LP_SEV_ERROR, fmt, ap);
    return s;
}

lp_status lp_error(lp_diag *d, lp_status s, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    lp_vreport(d, LP_SEV_ERROR, fmt, ap);
    va_end(ap);
    return s;
}

void lp_warn(lp_diag *d, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    lp_vreport(d, LP_SEV_WARNING, fmt, ap);
    va_end(ap);
}

void lp_note(lp_diag *d, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    lp_vreport(d, LP_SEV_NOTE, fmt, ap);
    va_end(ap);
}

const char *lp_format_bytes(uint64_t bytes, char buf[32]) {
    static const char *const unit[] = {"B", "KiB", "MiB", "GiB", "TiB", "PiB"};
    if (bytes < 1024) {
        snprintf(buf, 32, "%llu B", (unsigned long long)bytes);
        return buf;
    }
    double v = (double)bytes;
    int u = 0;
    while (v >= 1024.0 && u < 5) {
        v /= 1024.0;
        u++;
    }
    snprintf(buf, 32, "%.2f %s", v, unit[u]);
    return buf;
}
