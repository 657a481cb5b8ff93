/* collector.CollectorConsole (console.c): Display. */
#ifndef SERVICES_CONSOLE_H
#define SERVICES_CONSOLE_H
#include "h2/method.h"
#include "services/svc.h"

int console_register(method_table *t, svc_env *env);

#endif
