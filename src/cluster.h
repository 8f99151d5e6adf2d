/*-------------------------------------------------------------------------
 *
 * cluster.h
 *	  bsoncrypt on a Citus cluster (citus_cluster.c): which node this is,
 *	  and changes of the key vault applied to every node.
 *
 *-------------------------------------------------------------------------
 */
#ifndef BSONCRYPT_CLUSTER_H
#define BSONCRYPT_CLUSTER_H

#include "postgres.h"

typedef enum ClusterRole
{
	CLUSTER_NONE,				/* no Citus in this database */
	CLUSTER_COORDINATOR,		/* Citus, local group 0: the key vault changes here */
	CLUSTER_WORKER				/* Citus, any other group: the vault is a copy */
} ClusterRole;

extern void cluster_init(void);
extern ClusterRole cluster_role(void);

#endif							/* BSONCRYPT_CLUSTER_H */
