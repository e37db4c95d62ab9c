#!/usr/bin/env bash
# Submit a sweep to Slurm: one job creates the study and enqueues its grid, then an array of
# worker tasks starts once it has succeeded, each task one `sweep worker` on the shared study.
#
#   export SWEEP_STORAGE=postgresql+psycopg://USER@DB-HOST/sweeps   # a database every node reaches
#   deploy/slurm/submit.sh studies/echo_first.toml echo-first 8      # study file, its name, tasks
#
# Extra sbatch options for the workers (partition, account, CPUs, memory) go in $SWEEP_SBATCH_OPTIONS.
set -euo pipefail

if [ "$#" -lt 2 ] || [ "$#" -gt 3 ]; then
    echo "usage: $0 STUDY_FILE STUDY_NAME [TASKS]" >&2
    exit 2
fi
study_file=$1
name=$2
tasks=${3:-4}
: "${SWEEP_STORAGE:?set SWEEP_STORAGE to the URL of a database every node reaches}"
here=$(cd "$(dirname "$0")" && pwd)

create=$(sbatch --parsable --job-name="sweep-create-$name" --cpus-per-task=1 --mem=2G --time=00:30:00 \
    --output="sweep-create-$name-%j.out" --export=ALL \
    --wrap="sweep create '$study_file' --name '$name'")
create=${create%%;*}  # "JOBID;CLUSTER" on a federation

# shellcheck disable=SC2086  # the extra options are meant to split
workers=$(sbatch --parsable --dependency="afterok:$create" --array="0-$((tasks - 1))" \
    --job-name="sweep-worker-$name" --export="ALL,SWEEP_STUDY=$name" ${SWEEP_SBATCH_OPTIONS:-} \
    "$here/worker.sbatch")
echo "study $name: create job $create, worker array ${workers%%;*} ($tasks tasks); watch with: sweep status $name"
