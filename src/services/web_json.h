/* The node's answers to the plain-HTTP side of its port (h2_web_hooks, h2/server.h):
 * /healthz's status and Connect's JSON through the type pool. */
#ifndef SERVICES_WEB_JSON_H
#define SERVICES_WEB_JSON_H
#include "h2/server.h"
#include "services/svc.h"

/* Fills hooks for env (which must outlive the server). */
void web_json_hooks(svc_env *env, h2_web_hooks *hooks);

#endif
