/*
 * admin.h -- `axon admin`: administration commands on a data dir.
 */
#ifndef AX_ADMIN_H
#define AX_ADMIN_H

/** Runs `axon admin ARGS...` ('argv' starts after "admin"); returns the exit status. */
int ax_admin_main(int argc, char **argv);

#endif
