//! Reading and parsing `/proc/PID/{stat,fd,fdinfo,maps,mem}`.
