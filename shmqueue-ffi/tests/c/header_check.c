/* Compiled (not run) by tests/header.rs as C11 and as C++: the header must
 * be warning-free under -Wall -Wextra -Werror in both. */
#include "shmqueue.h"

int main(void) {
    shmq_queue_config cfg = shmq_queue_config_default(SHMQ_KIND_SPSC, 8, 8);
    shmq_queue_t q = {0};
    shmq_status s = shmq_queue_create("/header-check", &cfg, &q);
    shmq_broadcast_config bcfg = shmq_broadcast_config_default(8, 8);
    bcfg.policy = SHMQ_POLICY_OVERWRITE;
    shmq_broadcast_t b = {0};
    shmq_subscriber_t sub = {0};
    (void)shmq_broadcast_create_memfd(&bcfg, &b);
    (void)shmq_subscribe(b, SHMQ_START_LATEST, 0, &sub);
    (void)shmq_strerror(s);
    (void)shmq_last_error_message();
    return s == SHMQ_OK ? 0 : 1;
}
