/* softpipe.h — the umbrella header: includes every public module header. */
#ifndef SOFTPIPE_H
#define SOFTPIPE_H

#include "softpipe/cache.h"
#include "softpipe/core.h"
#include "softpipe/eval.h"
#include "softpipe/image.h"
#include "softpipe/ingest.h"
#include "softpipe/load.h"
#include "softpipe/shard.h"
#include "softpipe/transform.h"
#include "softpipe/tree.h"

#endif
