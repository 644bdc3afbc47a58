/* readInto (read-into.c), registered on the blobcore_buffers addon's exports. */
#ifndef BLOBCORE_READ_INTO_H
#define BLOBCORE_READ_INTO_H

#include <node_api.h>

int register_read_into(napi_env env, napi_value exports);

#endif
