/*
 * background.h - XMM_BACKGROUND=1: a thread that returns decayed memory
 * while the program is idle (otherwise decay runs on allocation slow
 * paths only, which an idle program never takes).
 */
#ifndef XMM_BACKGROUND_H
#define XMM_BACKGROUND_H

/* Starts the thread if configured; from init phase 2. */
void xmm_background_start(void);

#endif
