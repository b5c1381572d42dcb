/* The verbs of dmskd_core_cli, one function each (argc/argv after the verb). */
#ifndef DMSKD_CLI_VERBS_H
#define DMSKD_CLI_VERBS_H

/* Encode an update from a flat float32 file. */
int cli_encode_update(int argc, char **argv);
/* Encode weights from a flat float32 file. */
int cli_encode_weights(int argc, char **argv);
/* Encode a model step from old and new flat float32 files. */
int cli_encode_step(int argc, char **argv);
/* Decode (and check, dequantise, apply) a blob. */
int cli_decode(int argc, char **argv);

/* Split a file into chunk files. */
int cli_chunk(int argc, char **argv);
/* Reassemble chunk files. */
int cli_join(int argc, char **argv);
/* Verify signed envelopes through a replay guard. */
int cli_verify(int argc, char **argv);
/* Parse a plan. */
int cli_plan(int argc, char **argv);
/* Clip tensors to an L2 bound. */
int cli_clip(int argc, char **argv);
/* A local-mode DP release of tensors. */
int cli_privatise(int argc, char **argv);
/* Discrete Gaussian draws or randomized roundings. */
int cli_noise(int argc, char **argv);

#endif
