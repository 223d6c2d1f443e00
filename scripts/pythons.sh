# Sourced by the scripts: finds the supported CPython interpreters.
#
# SUPPORTED lists the versions tress supports (pyproject.toml declares the
# same).  find_pythons fills PYTHONS with the interpreters present, the
# first supported version first: each is the newest installed release of
# its minor version under pyenv (`pyenv latest`), else `python3.X` on PATH.
# A version that is missing is reported on stderr as skipped, never
# silently left out; none found at all is an error.

SUPPORTED=(3.11 3.12 3.13)

find_pythons() {
    PYTHONS=()
    local minor exe full
    for minor in "${SUPPORTED[@]}"; do
        exe=""
        if command -v pyenv >/dev/null 2>&1 && full=$(pyenv latest "$minor" 2>/dev/null); then
            exe="$(pyenv root)/versions/$full/bin/python"
        elif command -v "python$minor" >/dev/null 2>&1; then
            exe=$(command -v "python$minor")
        fi
        if [ -n "$exe" ] && [ -x "$exe" ]; then
            PYTHONS+=("$exe")
        else
            echo "== SKIPPED: CPython $minor is not installed (neither \`pyenv latest $minor\` nor python$minor on PATH)" >&2
        fi
    done
    if [ "${#PYTHONS[@]}" -eq 0 ]; then
        echo "error: none of CPython ${SUPPORTED[*]} is installed" >&2
        return 1
    fi
}

# The version of interpreter $1, e.g. 3.12.1.
python_version() {
    "$1" -c 'import platform; print(platform.python_version())'
}
