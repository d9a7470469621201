// What a trainer needs of the processes it trains with, when there are several (data parallelism):
// each process (rank) holds a replica of the model, takes its own shard of every global batch
// (data::Shard), and after the backward pass every rank's gradients are replaced by their mean over
// the ranks, so every rank takes the same optimizer step. The transport lives above train/, in
// dist/ (dist/mpi.hpp: Open MPI), so nothing below depends on one; a trainer without a DataParallel
// is one process and pays nothing.
//
// The protocol of one step, over a flat gradient buffer grads[0, n):
//   begin(grads, n)          before the backward pass;
//   finished(first, last)    grads[first, last) (byte pointers into the buffer) will not change again
//                            in this backward pass: a transport may start reducing them now, while
//                            the backward pass goes on (UNet::backward reports each part it ends);
//   average()                after it: returns with grads[0, n) the mean over the ranks, bitwise
//                            the same on every rank.
// sum() and broadcast() serve the statistics (losses for the log, the latent scale) and the start
// of a run (every rank from rank 0's parameters).
#ifndef DIFFUSE_TRAIN_DATA_PARALLEL_HPP
#define DIFFUSE_TRAIN_DATA_PARALLEL_HPP

#include <cstddef>

#include "diffuse/core/params.hpp"

namespace diffuse {

template <class T>
class DataParallel {
public:
    virtual ~DataParallel() = default;
    virtual int rank() const = 0;
    virtual int ranks() const = 0;

    virtual void begin(T* grads, std::size_t n) = 0;
    virtual void finished(const void* first, const void* last) = 0;
    virtual void average() = 0;

    /// v[0, n) ← its sum over the ranks (on every rank, in the same order).
    virtual void sum(double* v, int n) = 0;
    /// p[0, n) ← rank 0's p.
    virtual void broadcast(T* p, std::size_t n) = 0;
};

/// The hook a backward pass calls with each part it finished: forwards the part's gradient span.
template <class T>
struct ReportFinished {
    DataParallel<T>* to;
    template <class Part>
    void operator()(const Part& part) const {
        const GradSpan s = grad_span(part);
        if (to && s.first) to->finished(s.first, s.last);
    }
};

}  // namespace diffuse

#endif
