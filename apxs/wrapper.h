/* The only httpd/APR headers bindgen sees (build.rs allowlists what mod_prison uses). */
#include <httpd.h>
#include <http_config.h>
#include <http_log.h>
#include <http_main.h>
#include <http_core.h>
#include <ap_mpm.h>
#include <mpm_common.h>
#include <unixd.h>
#include <apr_strings.h>
#include <apr_pools.h>
